"""The scale benchmark's Milvus column: the same vectors and queries through the Milvus VectorStore on
milvus-lite (one local file, one process), beside the FAISS index the runtime picks.

What it measures at one size: bulk load (vectors/s, in the store's 5,000-row upserts, then one flush), one
query at a time (p50/p99, recall@10 against exact search, the same queries as the FAISS rows), and one
registration's store work (an upsert, then the first search after it, which pays milvus-lite's flush).
milvus-lite is a single-process engine for tests and trials (docs/distributed.md): read its numbers as
"what one machine without a server does", not as Milvus server or cluster figures."""
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.scale_measure import percentiles, search_quality
from indexing.backends.milvus import MilvusStore, connect


def measure_milvus(n: int, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, registrations: np.ndarray,
                   workdir: Path, index_type: str = "FLAT") -> dict:
    dim = base.shape[1]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        client = connect(str(Path(tmp) / f"milvus-{n}.db"))
        try:
            store = MilvusStore(client, encoder_id="bench", dim=dim, build=f"n{n}", index_type=index_type)
            started = time.perf_counter()
            for start in range(0, n, 50_000):  # a worker replays the log in batches of this size
                store.upsert(np.arange(start, min(n, start + 50_000)), np.asarray(base[start:start + 50_000]))
            store.count()  # flush + count: the load is done when it is searchable at full speed
            load_s = time.perf_counter() - started
            row = {"index_type": f"milvus-lite {index_type}", "load_s": round(load_s, 1),
                   "load_vectors_per_s": round(n / load_s),
                   **search_quality(store, queries, truth),
                   "registration": registration_cost(store, registrations, queries[0], first_id=10**12)}
            client.drop_collection(store.name)
            return row
        finally:
            client.close()


def registration_cost(store: MilvusStore, vectors: np.ndarray, query: np.ndarray, first_id: int) -> dict:
    """Per new vector: the upsert, and the first search after it (milvus-lite flushes before that read)."""
    upserts, first_searches = [], []
    for i, vector in enumerate(vectors):
        started = time.perf_counter()
        store.upsert(np.array([first_id + i]), vector[None])
        upserts.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        store.search(query[None], 40)
        first_searches.append((time.perf_counter() - started) * 1000)
    store.delete(np.arange(first_id, first_id + len(vectors)))
    return {"upsert": percentiles(upserts), "first_search_after": percentiles(first_searches)}

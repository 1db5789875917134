"""Measurements for bench/scale.py: search latency and recall, one registration's index work through
the change log, warm and cold worker starts, memory of two workers sharing one snapshot."""
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from bench.scale_data import exact_top_k
from common.db.models import ChangelogHead, Embedding, ImageState, SourceImage, VectorChange, Work
from common.db.schema import reset_schema
from common.db.session import make_engine
from common.storage import storage_from
from indexing.backends import faiss as backend
from indexing.backends.faiss import FaissStore, IndexParams, build_store
from indexing.follower import sync_store
from indexing.snapshots import write_snapshot
from indexing.store import build_from_database
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]


def percentiles(samples_ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(samples_ms, 50)), 3),
            "p99_ms": round(float(np.percentile(samples_ms, 99)), 3)}


def search_quality(store: FaissStore, queries: np.ndarray, truth: np.ndarray, k: int = 40) -> dict:
    """One query at a time, as a worker serves them: latency, and recall@10 against exact search."""
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        ids, _ = store.search(query[None], k)
        times.append((time.perf_counter() - started) * 1000)
        found.append(ids[0, :10])
    recall = np.mean([len(set(f.tolist()) & set(t[:10].tolist())) / 10 for f, t in zip(found, truth)])
    return {**percentiles(times), "recall_at_10": round(float(recall), 4)}


def round_medians(rounds: list[dict], keys=("p50_ms", "p99_ms", "recall_at_10"), prefix: str = "") -> dict:
    """The median over interleaved rounds of `search_quality`'s figures (bench.fold, bench.rotation)."""
    return {f"{prefix}{key}": round(float(np.median([r[key] for r in rounds])), 3) for key in keys}


def probes_split_against_one_thread(store: FaissStore, queries: np.ndarray, truth: np.ndarray, rounds: int = 2,
                                    split_from: float | None = None) -> dict:
    """One query at a time with the runtime's threads (past `PARALLEL_SCAN_FROM` codes, or `split_from`,
    its probes split over FAISS's team) against every base search on one thread (the code before), rounds
    interleaved."""
    kept = backend.PARALLEL_SCAN_FROM
    ways = {"runtime": kept if split_from is None else split_from, "one_thread": float("inf")}
    out = {name: [] for name in ways}
    try:
        for r in range(rounds):
            for name, threshold in (list(ways.items()) if r % 2 == 0 else list(ways.items())[::-1]):
                backend.PARALLEL_SCAN_FROM = threshold
                out[name].append(search_quality(store, queries, truth))
    finally:
        backend.PARALLEL_SCAN_FROM = kept
    return {"codes_scanned": round(store._codes_scanned(store.nprobe)), "split_from": ways["runtime"], "rounds": rounds,
            **{name: round_medians(found) for name, found in out.items()}}


def padded_intro(result: dict) -> str:
    """The sentence a padded-features bench's table starts with: command, machine, queries, exact search."""
    m, exact = result["machine"], result["exact"]
    return (f"`{result['command']}`. Machine: {m['cpu']}, {m['cores']} cores; {m['date'][:16]} UTC. "
            f"Real Lite0 features padded to N; {result['queries']} cross-context queries, one at a time, k=40; "
            "latency: medians of the rounds' p50/p99, rounds interleaved over the bases. Exact search: "
            f"top-1 {exact['top1_pct']} %, AP@100 {exact['ap_at_100_pct']} %.")


def write_result(out: Path, name: str, result: dict, markdown) -> None:
    """`name`.json and `name`.md (markdown(result)) under `out`, the table printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


def upsert_cost(store: FaissStore, vectors: np.ndarray, first_id: int) -> dict:
    """The store's part of one registration: upsert one new vector (repeated, each a new id)."""
    times = []
    for i, vector in enumerate(vectors):
        started = time.perf_counter()
        store.upsert(np.array([first_id + i]), vector[None])
        times.append((time.perf_counter() - started) * 1000)
    store.delete(np.arange(first_id, first_id + len(vectors)))
    return percentiles(times)


def fill_database(url: str, vectors: np.ndarray, log_rows: int, chunk: int = 20_000) -> None:
    """A migrated database with one work, len(vectors) embedded images and `log_rows` log rows."""
    reset_schema(url)
    engine, work_id, dim = make_engine(url), uuid.uuid4(), vectors.shape[1]
    with engine.begin() as conn:
        conn.execute(insert(Work), [{"id": work_id, "title": "bench", "rights_holder": "bench"}])
        for start in range(0, len(vectors), chunk):
            ids = range(start + 1, min(len(vectors), start + chunk) + 1)
            conn.execute(insert(SourceImage), [
                {"id": i, "work_id": work_id, "content_sha256": f"{i:064d}", "storage_key": "k",
                 "media_type": "image/jpeg", "byte_size": 1, "width": 1, "height": 1,
                 "state": ImageState.embedded} for i in ids])
            conn.execute(insert(Embedding), [{"image_id": i, "encoder_id": "bench", "vector":
                                              np.asarray(vectors[i - 1], np.float32).tobytes()} for i in ids])
        for start in range(0, log_rows, 100_000):
            conn.execute(insert(VectorChange), [{"seq": s, "op": "upsert", "image_id": s, "encoder_id": "bench"}
                                                for s in range(start + 1, min(log_rows, start + 100_000) + 1)])
        conn.execute(ChangelogHead.__table__.update().values(seq=log_rows))
    engine.dispose()


def registration_sync_cost(n: int, dim: int, rng: np.random.Generator, repeats: int = 20) -> dict:
    """The log part of one registration at a log of n rows (SQLite): commit one vector + log row, then
    time a worker's sync of it (head read, log rows past its position, bulk vector fetch, upsert)."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/log.db"
        fill_database(url, np.zeros((0, dim), np.float32), n)
        engine = make_engine(url)
        store = build_store("bench", dim, np.zeros(0, np.int64), np.zeros((0, dim), np.float32), IndexParams(),
                            applied_seq=n)
        times, rows = [], []
        for i in range(repeats):
            _commit_one_registration(engine, n + i + 1, rng.standard_normal(dim).astype(np.float32))
            with Session(engine) as session:
                started = time.perf_counter()
                rows.append(sync_store(session, store).rows_read)
                times.append((time.perf_counter() - started) * 1000)
        engine.dispose()
    return {**percentiles(times), "log_rows_read_per_sync": max(rows)}


def _commit_one_registration(engine, seq: int, vector: np.ndarray) -> None:
    from common.db import crud
    with Session(engine) as session:
        work = Work(id=uuid.uuid4(), title="w", rights_holder="r")
        image = SourceImage(work=work, content_sha256=uuid.uuid4().hex, storage_key="k", media_type="image/jpeg",
                            byte_size=1, width=1, height=1, state=ImageState.embedded)
        session.add_all([work, image])
        session.flush()
        session.add(Embedding(image_id=image.id, encoder_id="bench", vector=vector.tobytes()))
        crud.record_vector_changes(session, op="upsert", image_ids=[image.id], encoder_id="bench")
        session.commit()


def cold_start(vectors: np.ndarray, params: IndexParams) -> dict:
    """Worker start from the database (SQLite file): bulk fetch of every live vector, then build."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/cold.db"
        fill_database(url, vectors, 0)
        engine = make_engine(url)
        with Session(engine) as session:
            started = time.perf_counter()
            store = build_from_database(session, "bench", vectors.shape[1], params)
            seconds = time.perf_counter() - started
        engine.dispose()
    return {"seconds": round(seconds, 2), "count": store.count(), "index_type": store.factory}


def warm_start_and_sharing(store: FaissStore, queries: np.ndarray, workdir: Path, with_model: bool = False) -> dict:
    """Write a snapshot, then start two probe processes at once that map it and serve queries; with
    `with_model` two more that also hold the encoder, as real workers do."""
    root = workdir / "storage"
    started = time.perf_counter()
    write_snapshot(storage_from(str(root)), store, scratch=workdir / "cache")
    written = time.perf_counter() - started
    np.save(workdir / "queries.npy", queries[:50])
    command = [sys.executable, "-m", "bench.scale_probe", str(root), store.encoder_id, str(workdir / "queries.npy")]
    single = json.loads(subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout)
    pair = [subprocess.Popen(command + ["--hold", "3"], cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    results = [json.loads(p.communicate()[0]) for p in pair]
    files = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    out = {"snapshot_write_s": round(written, 2), "snapshot_mb": round(files / 2**20, 1), "alone": single,
           "two_workers": results}
    if with_model:
        pair = [subprocess.Popen(command + ["--hold", "10", "--with-model"], cwd=REPO, stdout=subprocess.PIPE,
                                 text=True) for _ in range(2)]
        out["two_workers_with_model"] = [json.loads(p.communicate()[0]) for p in pair]
    return out


def quality(store: FaissStore, base: np.ndarray, queries: np.ndarray, subject: np.ndarray,
            exemplar_rows: np.ndarray) -> dict:
    """Cross-context attribution, exact vs this store: top-1 (the query's own work ranks first) and
    AP@100 (one exemplar per work: 1 / its rank when within the first 100, else 0), in percent."""
    exact = exact_top_k(base, queries, 100)
    approx = store.search(queries, 100)[0]
    return {name: _attribution_metrics(found, subject, exemplar_rows) for name, found in
            (("exact", exact), ("approximate", approx))}


def _attribution_metrics(found: np.ndarray, subject: np.ndarray, exemplar_rows: np.ndarray) -> dict:
    target = exemplar_rows[subject]
    hits = found == target[:, None]
    rank = np.where(hits.any(1), hits.argmax(1) + 1, 0)
    ap = np.where(rank > 0, 1.0 / np.maximum(rank, 1), 0.0)
    return {"top1_pct": round(100 * float((rank == 1).mean()), 2), "ap_at_100_pct": round(100 * float(ap.mean()), 2)}

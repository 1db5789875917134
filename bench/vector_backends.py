"""FAISS (in-process, exact IDMap2,Flat) beside Milvus (milvus-lite, FLAT) on one machine: insert rate,
single-query and batched search latency, delete cost, and agreement of the top-k.

    PYTHONPATH=. .venv/bin/python -m bench.vector_backends --sizes 10000 50000 --dim 1280

Random unit vectors (search cost does not depend on content for exact search). Queries alternate between
the backends one by one, so load from other processes on a shared machine hits both alike; the ratio
column is the number to read. Writes JSON + a markdown table under bench/results/vectors/."""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from indexing.backends.milvus import MilvusStore, connect


def unit(rows: int, dim: int, rng) -> np.ndarray:
    v = rng.standard_normal((rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def faiss_store(dim: int):
    """The FAISS VectorStore (indexing/backends/faiss.py) where it exists, else today's exact index."""
    try:
        from indexing.backends.faiss import empty_store
        return empty_store("bench", dim)
    except ImportError:
        from core.index import VectorIndex
        index = VectorIndex("bench", dim)
        index.upsert, index.delete = index.add, index.remove
        return index


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(n: int, dim: int, queries: int, k: int, workdir: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    vectors, ids = unit(n, dim, rng), np.arange(n, dtype=np.int64)
    faiss_index = faiss_store(dim)
    client = connect(str(workdir / f"bench-{n}.db"))
    milvus = MilvusStore(client, encoder_id="bench", dim=dim, build=f"n{n}")
    insert = {"faiss": timed(lambda: faiss_index.upsert(ids, vectors)),
              "milvus": timed(lambda: milvus.upsert(ids, vectors))}
    probes = unit(queries, dim, rng)
    single = {"faiss": [], "milvus": []}
    agree = 0
    for q in probes:  # interleaved
        t0 = time.perf_counter()
        f_ids, _ = faiss_index.search(q[None], k)
        t1 = time.perf_counter()
        m_ids, _ = milvus.search(q[None], k)
        t2 = time.perf_counter()
        single["faiss"].append(t1 - t0)
        single["milvus"].append(t2 - t1)
        agree += len(set(f_ids[0].tolist()) & set(m_ids[0].tolist()))
    batch = {"faiss": timed(lambda: faiss_index.search(probes[:32], k)),
             "milvus": timed(lambda: milvus.search(probes[:32], k))}
    gone = ids[: max(1, n // 100)]
    delete = {"faiss": timed(lambda: faiss_index.delete(gone)), "milvus": timed(lambda: milvus.delete(gone))}
    client.drop_collection(milvus.name)
    client.close()
    row = {"n": n, "dim": dim, "k": k, "queries": queries, "topk_agreement": agree / (queries * k)}
    for name in ("faiss", "milvus"):
        lat = sorted(single[name])
        row[name] = {"insert_vectors_per_s": n / insert[name],
                     "search_ms_p50": 1000 * statistics.median(lat),
                     "search_ms_p95": 1000 * lat[int(0.95 * (len(lat) - 1))],
                     "batch32_ms": 1000 * batch[name], "delete_1pct_ms": 1000 * delete[name]}
    row["milvus_over_faiss_p50"] = row["milvus"]["search_ms_p50"] / row["faiss"]["search_ms_p50"]
    return row


def markdown(report: dict) -> str:
    lines = [f"# FAISS vs Milvus (milvus-lite) on one machine\n",
             f"{report['machine']}, {report['when']}. Shared, noisy machine (other jobs running; 1-min load "
             f"average {report['load_average_1min']['before']:.0f} before, {report['load_average_1min']['after']:.0f} after); "
             f"queries interleaved between backends. Exact search on both (FAISS IDMap2,Flat; Milvus FLAT).\n",
             "| n | dim | backend | insert vec/s | search p50 ms | p95 ms | 32-query batch ms | delete 1% ms |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        for name in ("faiss", "milvus"):
            r = row[name]
            lines.append(f"| {row['n']:,} | {row['dim']} | {name} | {r['insert_vectors_per_s']:,.0f} | "
                         f"{r['search_ms_p50']:.2f} | {r['search_ms_p95']:.2f} | {r['batch32_ms']:.1f} | "
                         f"{r['delete_1pct_ms']:.1f} |")
    lines.append("")
    for row in report["rows"]:
        lines.append(f"- n={row['n']:,}: Milvus p50 / FAISS p50 = {row['milvus_over_faiss_p50']:.1f}x; "
                     f"top-{row['k']} agreement {row['topk_agreement']:.3f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vector_backends", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("bench/results/vectors"))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as workdir:
        rows = [measure(n, args.dim, args.queries, args.k, Path(workdir)) for n in args.sizes]
    report = {"machine": f"{platform.node()} ({platform.processor() or platform.machine()}, "
                         f"{os.cpu_count()} cores)",
              "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]}, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vector_backends.json").write_text(json.dumps(report, indent=2))
    (args.out / "vector_backends.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

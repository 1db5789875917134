"""PQ codes with and without a random rotation before the IVF (`ATTRIB_ANN_ROTATE`, issue 8's quality
target: top-1 and AP@100 within 0.5 points of exact search at 1M).

    PYTHONPATH=. .venv/bin/python -m bench.rotation --n 1000000     # the README's figures
    PYTHONPATH=. .venv/bin/python -m bench.rotation                 # reduced: 300,000 vectors

Real Lite0 features padded to N (bench/scale_data.py, the file bench.scale and bench.fold write); two
bases built by the runtime's builder over the same vectors, with the runtime's parameters but for
`rotate`: `IVF..,PQ..x4fs` (before) and `RR<dim>,IVF..,PQ..x4fs` (now). Per base: build time, one query
at a time (k=40, as a worker asks; rounds interleaved over the two, each with one query's base search
on one thread as the runtime does and on FAISS's default threads as before) p50/p99, recall@10 against exact
search with the runtime's re-rank and retry and with the codes alone (no re-rank, no retry), and top-1
and AP@100 of the cross-context queries. Why: a feature's variance sits in a few of its 1,280
dimensions, PQ gives every 4 dimensions the same 4 bits, and the works' exemplars, which the queries
look for, were ranked past the re-rank depth by the codes (a diagnosis of the 34 queries whose
exemplar moved: 28 had it in a list the first pass visits, the codes put it at a median rank of ~4,000).
Writes bench/results/scale/rotation.{json,md} (rotation-N.* at other sizes)."""
import argparse
import contextlib
import dataclasses
import time
from pathlib import Path

import numpy as np

from bench.attribution import machine
from bench.scale import ensure_crossdomain
from bench.scale_data import exact_top_k, held_out_queries, padded_base, real_features
from bench.scale_measure import (
    _attribution_metrics,
    padded_intro,
    probes_split_against_one_thread,
    round_medians,
    search_quality,
    write_result,
)
from common.settings import Settings
from indexing.backends import faiss as backend
from indexing.backends.faiss import build_store
from indexing.store import index_params


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.rotation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300_000, help="vectors (1,000,000 for the README)")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds, interleaved over the bases")
    parser.add_argument("--set", type=Path, default=Path("bench/out/crossdomain"))
    parser.add_argument("--work", type=Path, default=Path("bench/out/scale"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale"))
    return parser.parse_args(argv)


def codes_alone(store, queries: np.ndarray, exact: np.ndarray) -> float:
    """recall@10 of the codes' own ranking: no re-rank, no retry, the first pass's lists."""
    kept = store.rerank, store.retry_below
    store.rerank, store.retry_below = 0, 0.0
    try:
        return search_quality(store, queries, exact[:, :10])["recall_at_10"]
    finally:
        store.rerank, store.retry_below = kept


@contextlib.contextmanager
def base_scan_threads(threads: int):
    """One query's base search on `threads` OpenMP threads (0: FAISS's default, the code before)."""
    kept = backend.BASE_SCAN_THREADS
    backend.BASE_SCAN_THREADS = threads
    try:
        yield
    finally:
        backend.BASE_SCAN_THREADS = kept


def main(argv=None) -> int:
    args = parse_args(argv)
    ensure_crossdomain(args.set)
    real = real_features(args.set, args.work / "features-lite0-0.npz")
    base = padded_base(real.base, args.n, args.work / f"base-{args.n}-0-d.f32", fit_on=real.base[len(real.subjects):])
    runtime = index_params(Settings())
    queries = real.queries
    print(f"{args.n:,} vectors; exact top 100 of {len(queries)} queries ...", flush=True)
    exact = exact_top_k(base, queries, 100)
    held_out, held_out_subject = held_out_queries(args.set, real)
    held_out_exact = exact_top_k(base, held_out, 100)
    stores, rows = {}, {}
    for name, rotate in (("plain", False), ("rotated", True)):
        started = time.perf_counter()
        stores[name] = build_store("bench", base.shape[1], np.arange(args.n), base,
                                   dataclasses.replace(runtime, rotate=rotate), scratch=args.work / "rotation-scratch")
        rows[name] = {"index_type": stores[name].factory, "build_s": round(time.perf_counter() - started, 1),
                      "rounds": [], "rounds_openmp": []}
        print(name, rows[name], flush=True)
    ways = [(name, threads) for name in stores for threads in (backend.BASE_SCAN_THREADS, 0)]
    for r in range(args.rounds):
        for name, threads in (ways if r % 2 == 0 else ways[::-1]):
            with base_scan_threads(threads):
                rows[name]["rounds" if threads else "rounds_openmp"].append(
                    search_quality(stores[name], queries, exact[:, :10]))
    for name, store in stores.items():
        row = rows[name]
        row.update(round_medians(row["rounds"]))
        row.update(round_medians(row["rounds_openmp"], ("p50_ms", "p99_ms"), prefix="openmp_"))
        row["codes_alone_recall_at_10"] = codes_alone(store, queries, exact)
        # The runtime keeps one query on one thread (PARALLEL_SCAN_FROM off: slower at 10M); would
        # splitting its probes over the team pay at this size? (every search split, against one thread)
        row["probes_split_everywhere"] = probes_split_against_one_thread(store, queries, exact[:, :10], split_from=0)
        row.update(_attribution_metrics(store.search(queries, 100)[0], real.query_subject, real.exemplar_rows))
        row["held_out"] = _attribution_metrics(store.search(held_out, 100)[0], held_out_subject, real.exemplar_rows)
    result = {"machine": machine(), "n": args.n, "dim": int(base.shape[1]), "queries": len(queries),
              "params": runtime.__dict__, "exact": _attribution_metrics(exact, real.query_subject, real.exemplar_rows),
              "bases": rows, "command": f"python -m bench.rotation --n {args.n}",
              "held_out": {"queries": len(held_out),
                           "exact": _attribution_metrics(held_out_exact, held_out_subject, real.exemplar_rows)}}
    name = "rotation" if args.n == 1_000_000 else f"rotation-{args.n}"
    write_result(args.out, name, result, markdown)
    return 0


def markdown(result: dict) -> str:
    exact = result["exact"]
    lines = [f"# PQ codes with and without a random rotation ({result['n']:,} x {result['dim']})", "",
             padded_intro(result), "",
             "| base | index | built in s | p50 / p99 ms | the same on FAISS's threads | recall@10 | recall@10, codes alone "
             "| top-1 % (vs exact) | AP@100 % (vs exact) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in result["bases"].items():
        lines.append(f"| {name} | `{row['index_type']}` | {row['build_s']} | {row['p50_ms']} / {row['p99_ms']} | "
                     f"{row.get('openmp_p50_ms', '-')} / {row.get('openmp_p99_ms', '-')} | "
                     f"{row['recall_at_10']} | {row['codes_alone_recall_at_10']} | {row['top1_pct']} "
                     f"({row['top1_pct'] - exact['top1_pct']:+.2f}) | {row['ap_at_100_pct']} "
                     f"({row['ap_at_100_pct'] - exact['ap_at_100_pct']:+.2f}) |")
    lines += ["", ("Both with the runtime's search settings (re-rank, retry, lists visited); `plain`: "
                   "`ATTRIB_ANN_ROTATE=false`, the index before 2026-11-27. p50 / p99: one query's base search "
                   "on one OpenMP thread (`BASE_SCAN_THREADS`, the runtime); *on FAISS's threads*: on as many "
                   "as FAISS likes (the code before), interleaved in the same rounds.")]
    if "held_out" in result:  # runs before 2026-11-28 lack it
        held = result["held_out"]
        lines += ["", f"Held out: the {held['queries']} traffic queries of the cross-context set, on which no search "
                  "setting was chosen (the re-rank depth, lists and retry were tuned on the evaluation queries "
                  f"above). Exact search: top-1 / AP@100 {held['exact']['top1_pct']} / {held['exact']['ap_at_100_pct']} %; "
                  + "; ".join(f"{name}: {row['held_out']['top1_pct']} ({row['held_out']['top1_pct'] - held['exact']['top1_pct']:+.2f}) / "
                              f"{row['held_out']['ap_at_100_pct']} ({row['held_out']['ap_at_100_pct'] - held['exact']['ap_at_100_pct']:+.2f})"
                              for name, row in result["bases"].items()) + "."]
    split = [(name, row["probes_split_everywhere"]) for name, row in result["bases"].items()
             if "probes_split_everywhere" in row]
    if split:  # runs before 2026-11-28 lack it
        lines += ["", "Every query's probes split over FAISS's threads (fast-scan implem 14; off in the runtime, "
                  "`PARALLEL_SCAN_FROM`) against one thread, 2 rounds interleaved, "
                  "p50 / p99 ms: " + "; ".join(
                      f"{name} ~{s['codes_scanned']:,} codes a query: {s['runtime']['p50_ms']:.1f} / "
                      f"{s['runtime']['p99_ms']:.1f} against {s['one_thread']['p50_ms']:.1f} / "
                      f"{s['one_thread']['p99_ms']:.1f}" for name, s in split) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

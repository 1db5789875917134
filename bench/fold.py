"""Folding changes into a trained base instead of rebuilding it (issue 8): what a fold costs, and what
it keeps of the search.

    PYTHONPATH=. .venv/bin/python -m bench.fold --n 1000000     # the README's figures
    PYTHONPATH=. .venv/bin/python -m bench.fold                 # reduced: 300,000 vectors

The vectors are real Lite0 features padded to N (bench/scale_data.py, the file bench.scale writes);
ids are row numbers. The first rows are the real ones: the works' exemplars and the real distractors.
Three bases over the same N vectors, with the runtime's parameters:
- `rebuilt`: trained and built over all N (what a rebuild makes; built here from memory, so its time
  leaves out the database reads a worker's rebuild adds: results/scale/rebuild-stall.md);
- `fold 20,000`: trained and built over rows [20,000, N), then rows [0, 20,000) upserted (the delta
  `ATTRIB_INDEX_COMPACT_AFTER` lets grow) and folded in: the works arrive after the training;
- `fold M`: trained over the last N - M rows, then the first M upserted and folded: the most a fold
  takes before the writer trains again, M = N / 2 with `ATTRIB_INDEX_RETRAIN_GROWTH` = 2, or less where
  fewer vectors get fewer IVF lists (`fewest_trained`: at 1M, 475,712, from 524,288 vectors with 1,024 lists).
Per base: the time to make it (the build; for a fold, the copy of the changes and the fold apart),
one query at a time (k=40, as a worker asks; rounds interleaved over the three) p50/p99, recall@10
against exact search, top-1 and AP@100 of the cross-context queries, and the IVF lists' imbalance.
The padding comes from one mixture, so the half trained on looks like the half folded in: a registry
whose new works differ from its old ones would drift further (not measured here).
Writes bench/results/scale/fold.{json,md} (fold-N.* at other sizes)."""
import argparse
import math
import time
from pathlib import Path

import numpy as np

from bench.attribution import machine
from bench.scale import ensure_crossdomain
from bench.scale_data import exact_top_k, padded_base, real_features
from bench.scale_measure import _attribution_metrics, padded_intro, round_medians, search_quality, write_result
from common.settings import Settings
from indexing.backends.faiss import build_store
from indexing.backends.faiss_fold import can_fold, fold
from indexing.store import index_params

UPSERT_CHUNK = 100_000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.fold", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300_000, help="vectors (1,000,000 for the README)")
    parser.add_argument("--delta", type=int, default=Settings().index_compact_after, help="the small fold's changes")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds, interleaved over the bases")
    parser.add_argument("--set", type=Path, default=Path("bench/out/crossdomain"))
    parser.add_argument("--work", type=Path, default=Path("bench/out/scale"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale"))
    return parser.parse_args(argv)


def fewest_trained(n: int, dim: int, params) -> int:
    """The fewest vectors a base can have been trained on and still take a fold up to n: n / growth, or
    more where fewer vectors get fewer lists (about sqrt(N), a power of two: 1M has 1,024, 524,288 and
    fewer 512), since a fold never changes the index type."""
    low, high = math.ceil(n / params.retrain_growth), n
    while low < high:  # the list count only grows with the count
        middle = (low + high) // 2
        low, high = (low, middle) if params.factory(middle, dim) == params.factory(n, dim) else (middle + 1, high)
    return low


def folded(base: np.ndarray, first: int, params, scratch: Path) -> tuple[object, dict]:
    """A base trained and built over rows [first, N), rows [0, first) upserted, then folded in."""
    n, dim = base.shape
    started = time.perf_counter()
    store = build_store("bench", dim, np.arange(first, n), base[first:], params, scratch=scratch)
    built_s = time.perf_counter() - started
    for start in range(0, first, UPSERT_CHUNK):
        stop = min(first, start + UPSERT_CHUNK)
        store.upsert(np.arange(start, stop), np.asarray(base[start:stop]))
    if not can_fold(store, params):
        raise SystemExit(f"the runtime would rebuild, not fold: {store.factory} trained on {store.trained_on()}, "
                         f"{store.count()} vectors wanted {params.factory(store.count(), dim)}")
    started = time.perf_counter()
    state = store.state()
    state_s = time.perf_counter() - started
    result = fold(store, state, params, scratch=scratch)
    fold_s = time.perf_counter() - started - state_s
    return result, {"trained_on": n - first, "folded_in": first, "base_build_s": round(built_s, 1),
                    "state_copy_s": round(state_s, 2), "fold_s": round(fold_s, 1)}


def main(argv=None) -> int:
    args = parse_args(argv)
    ensure_crossdomain(args.set)
    real = real_features(args.set, args.work / "features-lite0-0.npz")
    fit_on = real.base[len(real.subjects):]
    base = padded_base(real.base, args.n, args.work / f"base-{args.n}-0-d.f32", fit_on=fit_on)
    params, scratch = index_params(Settings()), args.work / "fold-scratch"
    queries = real.queries
    print(f"{args.n:,} vectors; exact top 100 of {len(queries)} queries ...", flush=True)
    exact = exact_top_k(base, queries, 100)
    stores, made = {}, {}
    started = time.perf_counter()
    stores["rebuilt"] = build_store("bench", base.shape[1], np.arange(args.n), base, params, scratch=scratch)
    made["rebuilt"] = {"trained_on": args.n, "build_s": round(time.perf_counter() - started, 1)}
    print("rebuilt", made["rebuilt"], flush=True)
    widest = args.n - fewest_trained(args.n, base.shape[1], params)
    for name, first in ((f"fold {args.delta:,}", args.delta), (f"fold {widest:,}", widest)):
        if name in stores or params.factory(args.n - first, base.shape[1]) != stores["rebuilt"].factory:
            print(f"{name}: skipped, {args.n - first:,} vectors get another index type than {args.n:,}", flush=True)
            continue
        stores[name], made[name] = folded(base, first, params, scratch)
        print(name, made[name], flush=True)
    rows = {name: {"index_type": store.factory, **made[name], "list_imbalance": round(store.list_imbalance(), 3),
                   "rounds": []} for name, store in stores.items()}
    for r in range(args.rounds):
        for name in (list(stores) if r % 2 == 0 else list(stores)[::-1]):
            rows[name]["rounds"].append(search_quality(stores[name], queries, exact[:, :10]))
    metrics = {"exact": _attribution_metrics(exact, real.query_subject, real.exemplar_rows)}
    for name, store in stores.items():
        row = rows[name]
        row.update(round_medians(row["rounds"]))
        row.update(_attribution_metrics(store.search(queries, 100)[0], real.query_subject, real.exemplar_rows))
    result = {"machine": machine(), "n": args.n, "dim": int(base.shape[1]), "queries": len(queries),
              "params": params.__dict__, "exact": metrics["exact"], "bases": rows,
              "command": f"python -m bench.fold --n {args.n}" + (f" --delta {args.delta}" if args.delta != Settings().index_compact_after else "")}
    name = "fold" if args.n == 1_000_000 else f"fold-{args.n}"
    write_result(args.out, name, result, markdown)
    return 0


def markdown(result: dict) -> str:
    lines = [f"# Folding changes into a trained base, beside a rebuild ({result['n']:,} x {result['dim']})", "",
             padded_intro(result), "",
             "| base | index | trained on | folded in | made in | p50 / p99 ms | recall@10 | top-1 % | AP@100 % | list imbalance |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in result["bases"].items():
        made = (f"{row['build_s']} s build" if "build_s" in row else
                f"{row['fold_s']} s fold (+{row['state_copy_s']} s copy; its base {row['base_build_s']} s)")
        lines.append(f"| {name} | `{row['index_type']}` | {row['trained_on']:,} | {row.get('folded_in', 0):,} | {made} | "
                     f"{row['p50_ms']} / {row['p99_ms']} | {row['recall_at_10']} | {row['top1_pct']} | "
                     f"{row['ap_at_100_pct']} | {row['list_imbalance']} |")
    lines += ["", ("`rebuilt`: trained and built over all N, from memory (a worker's rebuild also reads the "
                   "database). `fold D`: trained and built over the other N - D rows, then D rows (the real "
                   "ones first: the works' exemplars) upserted and folded in; its time is the fold alone, the "
                   "copy of the changes (taken under the job lock in a worker) apart.")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

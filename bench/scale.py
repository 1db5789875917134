"""How far one machine goes: index size vs search latency and recall, one registration's index work,
worker start (snapshot vs database), memory of two workers sharing one snapshot, attribution quality
with the approximate index forced (issue 8, "How it is measured").

    PYTHONPATH=. .venv/bin/python -m bench.scale            # reduced: 10k and 100k vectors, minutes
    PYTHONPATH=. .venv/bin/python -m bench.scale --full     # adds 1M (about 25 GB of disk traffic, 5 GB file)
    ... --cold-max 1000000                                  # also start a worker from a 1M-vector database
    ... --milvus-max 0                                      # without the Milvus (milvus-lite) column

Each size up to --milvus-max also loads the same vectors into the Milvus backend on milvus-lite and runs
the same queries through it (bench/scale_milvus.py), a column beside FAISS.

Vectors are real Lite0 features padded with samples of a mixture fitted to them (bench/scale_data.py).
Writes bench/results/scale/{scale.json, report.md, *.png}; the machine is named in both."""
import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.attribution import machine
from bench.scale_data import exact_top_k, padded_base, real_features
from bench.scale_measure import (
    cold_start,
    quality,
    registration_sync_cost,
    search_quality,
    upsert_cost,
    warm_start_and_sharing,
)
from bench.scale_milvus import measure_milvus
from bench.scale_report import write_report
from common.settings import Settings
from indexing.backends.faiss import IndexParams, build_store
from indexing.store import index_params

NPROBES = [16, 32, 64, 128, 256, 512]
RERANKS = [0, 250, 500, 1000, 2000]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="add the 1M size (needs ~8 GB free memory)")
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="override the sizes")
    parser.add_argument("--set", type=Path, default=Path("bench/out/crossdomain"), help="cross-context set")
    parser.add_argument("--work", type=Path, default=Path("bench/out/scale"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale"))
    parser.add_argument("--max-distractors", type=int, default=0,
                        help="embed at most this many of the set's distractors (0 = all; a seeded sample)")
    parser.add_argument("--cold-max", type=int, default=100_000, help="largest size started from the database")
    parser.add_argument("--pad-fit", choices=["distractors", "all"], default="distractors",
                        help="what the padding model is fitted to: the distractors only (default), or every real "
                             "image including the subjects' other photos (then padding holds synthetic near-copies "
                             "of the works: at 10k, 95%% of queries' exact top-1 is a padded vector)")
    parser.add_argument("--codes-at", type=int, default=100_000,
                        help="the size at which PQ codes are compared with the runtime's pick (0 = never; "
                             "PQ training and encoding at 1280 d take minutes per 100k on 2 cores)")
    parser.add_argument("--milvus-max", type=int, default=100_000,
                        help="largest size also measured on Milvus (milvus-lite; ~300 inserts/s here); 0 = none")
    return parser.parse_args(argv)


def ensure_crossdomain(path: Path) -> None:
    if not (path / "manifest.json").exists():
        from bench.make_crossdomain import main as build
        build(["--out", str(path)])


def measure_size(n: int, base: np.ndarray, real, params: IndexParams, args, largest: bool) -> dict:
    """Everything at one size: the index the runtime picks, the other kind beside it, and more."""
    queries, dim = real.queries, base.shape[1]
    truth = exact_top_k(base, queries, 10)
    row: dict = {"n": n, "dim": dim, "queries": len(queries)}
    started = time.perf_counter()
    store = build_store("bench", dim, np.arange(n), base, params)
    row["runtime_pick"] = {"index_type": store.factory, "build_s": round(time.perf_counter() - started, 1),
                           **search_quality(store, queries, truth)}
    rng = np.random.default_rng(n)
    row["registration"] = {"store_upsert": upsert_cost(store, real.base[rng.choice(len(real.base), 30)], 10**12),
                           "log_sync": registration_sync_cost(n, dim, rng)}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        row["start"] = warm_start_and_sharing(store, queries, Path(tmp), with_model=largest)
    row["start"]["index_memory_mb"] = round(store.base_bytes_size() / 2**20, 1)
    if n <= args.cold_max:
        row["start"]["cold"] = cold_start(np.asarray(base), params)
    if n <= args.milvus_max:
        row["milvus"] = measure_milvus(n, base, queries, truth, real.base[rng.choice(len(real.base), 10)],
                                       args.work, Settings().milvus_index_type)
    approximate = store if store.factory != "IDMap2,Flat" else None
    other = replace(params, ann_threshold=1 if approximate is None else 10**12)
    if n <= 200_000:  # exact beside it at 1M would need a second 5 GB copy; the issue measured it
        started = time.perf_counter()
        alt = build_store("bench", dim, np.arange(n), base, other)
        row["other"] = {"index_type": alt.factory, "build_s": round(time.perf_counter() - started, 1),
                        **search_quality(alt, queries, truth)}
        approximate = approximate or alt
    if largest and approximate is not None:
        row.update(ann_study(approximate, base, real, queries, truth, params, n))
    if n == args.codes_at:
        row["codes"] = codes_study(base, queries, truth, params, n)
    return row


def ann_study(alt, base, real, queries, truth, params: IndexParams, n: int) -> dict:
    """At the largest size, with the approximate index: nprobe and re-rank sweeps, attribution quality."""
    sweep, reranks = [], []
    alt.retry_below = 0.0  # the sweeps show plain settings; the runtime's retry policy is measured after them
    for nprobe in NPROBES:
        alt.nprobe, alt._params = nprobe, None
        sweep.append({"nprobe": nprobe, **search_quality(alt, queries, truth)})
    alt.nprobe, alt._params = params.nprobe, None
    rows = alt.rows
    for depth in RERANKS:
        alt.rerank, alt.rows = depth, rows if depth else None
        reranks.append({"rerank": depth, **search_quality(alt, queries, truth)})
    alt.rerank, alt.rows = params.rerank, rows
    plain = quality(alt, base, queries, real.query_subject, real.exemplar_rows)
    alt.retry_below, alt._params = params.retry_below, None
    study = {"nprobe_sweep": sweep, "rerank_sweep": reranks,
             "quality": quality(alt, base, queries, real.query_subject, real.exemplar_rows)}
    study["quality"]["approximate, no retry"] = plain["approximate"]
    return study


def codes_study(base, queries, truth, params: IndexParams, n: int) -> dict:
    """The previous default beside the runtime's pick: SQ8 codes (1 byte a dimension), no re-rank."""
    sq8 = replace(params, ann_threshold=1, ann_codes="SQ8", rerank=0)
    started = time.perf_counter()
    store = build_store("bench", base.shape[1], np.arange(n), base, sq8)
    return {"index_type": store.factory, "build_s": round(time.perf_counter() - started, 1),
            "index_memory_mb": round(store.base_bytes_size() / 2**20, 1), **search_quality(store, queries, truth)}


def main(argv=None) -> None:
    args = parse_args(argv)
    sizes = args.sizes or ([10_000, 100_000, 1_000_000] if args.full else [10_000, 100_000])
    args.work.mkdir(parents=True, exist_ok=True)
    ensure_crossdomain(args.set)
    started = time.perf_counter()
    real = real_features(args.set, args.work / f"features-lite0-{args.max_distractors}.npz", args.max_distractors)
    params = index_params(Settings())
    results = {"command": "python -m bench.scale" + (" --full" if args.full else "")
               + (f" --max-distractors {args.max_distractors}" if args.max_distractors else "")
               + (f" --pad-fit {args.pad_fit}" if args.pad_fit != "distractors" else "")
               + (f" --milvus-max {args.milvus_max}" if args.milvus_max != 100_000 else "")
               + (f" --cold-max {args.cold_max}" if args.cold_max != 100_000 else ""), "machine": machine(),
               "params": params.__dict__, "pad_fit": args.pad_fit, "real_vectors": len(real.base), "real_extra": len(real.extra),
               "real_queries": len(real.queries),
               "subjects": len(real.subjects), "load_average_before": os.getloadavg(), "features_s": round(time.perf_counter() - started, 1), "sizes": []}
    for n in sizes:
        # "distractors": padding like more distractors (a model of the images that are no work);
        # "all": also the subjects' other photos, which makes synthetic near-copies of the works
        fit_on = (real.base[len(real.subjects):] if args.pad_fit == "distractors"
                  else np.concatenate([real.base, real.extra]))
        suffix = "" if args.pad_fit == "all" else "-d"
        base = padded_base(real.base, n, args.work / f"base-{n}-{args.max_distractors}{suffix}.f32", fit_on=fit_on)
        results["sizes"].append(measure_size(n, base, real, params, args, largest=n == max(sizes)))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.json").write_text(json.dumps(results, indent=2))  # partial results survive
        print(json.dumps(results["sizes"][-1])[:2000], flush=True)
    results["total_s"] = round(time.perf_counter() - started, 1)
    results["load_average_after"] = os.getloadavg()
    (args.out / "scale.json").write_text(json.dumps(results, indent=2))
    write_report(results, args.out)


if __name__ == "__main__":
    main()

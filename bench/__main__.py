"""One command for the scale benchmarks (issue 8): index scale (10k-1M, and 10M on its own), a worker's
cold start from the database, re-rank reads with a cold page cache, jobs while a snapshot or a rebuild
runs beside them, the cost of the exact delta, folding the delta into the trained base (its cost and
search quality beside a rebuild),
ingest/enqueue (an embedding worker beside a dedicated attribution worker, the default launch; and one
worker serving both queues), FAISS beside Milvus, and the embedding path on a GPU where one is present.

    PYTHONPATH=. .venv/bin/python -m bench            # reduced sizes: minutes on 2 cores
    PYTHONPATH=. .venv/bin/python -m bench --full     # 10k/100k/1M and 10M vectors, 2,000-image ingest (2 hours+)
    PYTHONPATH=. .venv/bin/python -m bench --only scale ingest

Needs the cross-context set (bench/README.md: `scripts/install-bench-data.sh`, then it is built on
first use). Each benchmark writes its JSON, markdown table and plots under bench/results/<name>/ and
names the machine; ratios inside one run are what to read on a shared machine. One failing benchmark
does not stop the others; the exit status says whether all ran."""
import argparse
import sys
import time
import traceback

REDUCED = {
    "scale": [],
    "cold-reads": ["--rows", "100000", "--queries", "10"],
    "ingest": ["--images", "300", "--bare-images", "64", "--probe-seconds", "15", "--saturation-seconds", "6"],
    "ingest-one-worker": ["--images", "300", "--bare-images", "64", "--probe-seconds", "15", "--saturation-seconds",
                          "6", "--layout", "single", "--out", "bench/results/ingest-one-worker"],
    "vectors": ["--sizes", "10000", "--queries", "100"],
    "gpu-embed": ["--images", "2048", "--rounds", "2"],
    "scale-10m": ["--n", "300000"],
    "cold-start": ["--n", "100000", "--rounds", "1"],
    "snapshot-stall": ["--n", "300000", "--rounds", "2"],
    "rebuild-stall": ["--rebuild", "--n", "100000", "--rounds", "1"],
    "delta-cost": [],
    "fold": ["--n", "300000"],
    "fold-stall": ["--fold", "--n", "100000", "--rounds", "1"],
    "rotation": ["--n", "300000"],
}
FULL = {
    "scale": ["--full"],
    "cold-reads": [],
    "ingest": [],
    "ingest-one-worker": ["--layout", "single", "--out", "bench/results/ingest-one-worker"],
    "vectors": ["--sizes", "10000", "50000", "--queries", "200"],
    "gpu-embed": [],
    "scale-10m": [],  # 10M x 1280: ~25 minutes on 2 cores, 24 GiB of disk
    "cold-start": ["--n", "1000000"],
    "snapshot-stall": ["--n", "1000000", "--rounds", "3"],
    "rebuild-stall": ["--rebuild", "--n", "1000000", "--rounds", "2"],  # ~35 minutes on 2 cores
    "delta-cost": [],
    "fold": ["--n", "1000000"],  # three 1M bases: ~20 minutes on 2 cores
    "fold-stall": ["--fold", "--n", "1000000", "--rounds", "1"],  # a niced rebuild from the database, then a fold
    "rotation": ["--n", "1000000"],  # two 1M bases: ~10 minutes on 2 cores
}
MODULES = {"scale": "bench.scale", "cold-reads": "bench.scale_cold_reads", "ingest": "bench.ingest",
           "ingest-one-worker": "bench.ingest", "vectors": "bench.vector_backends", "gpu-embed": "bench.gpu_embed",
           "scale-10m": "bench.scale_10m", "cold-start": "bench.scale_cold_start",
           "snapshot-stall": "bench.snapshot_stall", "rebuild-stall": "bench.snapshot_stall",
           "delta-cost": "bench.delta_cost", "fold": "bench.fold", "fold-stall": "bench.snapshot_stall",
           "rotation": "bench.rotation"}
NEEDS_CUDA = {"gpu-embed"}


def run(name: str, argv: list[str]) -> None:
    import importlib
    if name in NEEDS_CUDA:
        import torch
        if not torch.cuda.is_available():
            print(f"skipped: {name} measures a GPU, and this machine has no CUDA device", flush=True)
            return
    importlib.import_module(MODULES[name]).main(argv)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the issue's sizes instead of the reduced ones")
    parser.add_argument("--only", nargs="+", choices=list(REDUCED), default=list(REDUCED))
    args = parser.parse_args(argv)
    sizes = FULL if args.full else REDUCED
    failed = []
    for name in args.only:
        started = time.monotonic()
        print(f"== bench {name} {' '.join(sizes[name])}", flush=True)
        try:
            run(name, sizes[name])
        except Exception:  # noqa: BLE001 - report and go on with the next benchmark
            traceback.print_exc()
            failed.append(name)
        print(f"== bench {name}: {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

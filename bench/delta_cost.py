"""What the exact delta adds to a search (issue 8): registrations since the last rebuild sit in an
in-memory exact index beside the base, scanned whole by every query, until the snapshot writer
rebuilds the base (`ATTRIB_INDEX_COMPACT_AFTER` changes, 20,000 by default).

    PYTHONPATH=. .venv/bin/python -m bench.delta_cost --base 100000 --deltas 0 5000 20000 50000

One store of `--base` Gaussian-cluster vectors built with the runtime's parameters; for each delta size
the same store gets that many upserts (new ids), then one query at a time (k=40, as a worker asks) is
timed, two ways: the delta scanned with FAISS's default OpenMP threads (`default`, the code before
2026-11-27) and on one thread (`one thread`, `DELTA_SCAN_THREADS`, now). Sizes and ways are visited in
interleaved rounds, a fresh copy of the delta each time. The delta's cost is added to the base's
whatever N is, so a small base shows it at any scale. Writes bench/results/scale/delta-cost.{json,md}."""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.attribution import machine
from bench.scale_measure import percentiles
from bench.snapshot_stall import clustered
from common.settings import Settings
from indexing.backends import faiss as backend
from indexing.backends.faiss import build_store
from indexing.store import index_params

WAYS = {"default": 0, "one thread": 1}  # backend.DELTA_SCAN_THREADS: 0 = FAISS's OpenMP default

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=100_000)
    parser.add_argument("--deltas", type=int, nargs="+", default=[0, 5_000, 20_000, 50_000])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale"))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    vectors = clustered(args.base + max(args.deltas), args.dim, rng)
    base, extra = vectors[:args.base], vectors[args.base:]
    store = build_store("bench", args.dim, np.arange(args.base), base, index_params(Settings()))
    queries = base[rng.choice(args.base, args.queries, replace=False)] + 0.05 * rng.standard_normal(
        (args.queries, args.dim)).astype(np.float32)
    samples: dict[tuple[int, str], list[float]] = {(d, w): [] for d in args.deltas for w in WAYS}
    for r in range(args.rounds):
        for size in (args.deltas if r % 2 == 0 else args.deltas[::-1]):
            store.delete(np.arange(args.base, args.base + max(args.deltas)))  # the previous size's delta
            store.upsert(np.arange(args.base, args.base + size), extra[:size])
            for way in (list(WAYS) if r % 2 == 0 else list(WAYS)[::-1]):
                backend.DELTA_SCAN_THREADS = WAYS[way]
                for query in queries:
                    started = time.perf_counter()
                    store.search(query[None], 40)
                    samples[size, way].append((time.perf_counter() - started) * 1000)
    backend.DELTA_SCAN_THREADS = WAYS["one thread"]
    rows = [{"delta": d, "way": w, "delta_mb": round(d * args.dim * 4 / 1e6, 1), **percentiles(s)}
            for (d, w), s in samples.items()]
    result = {"machine": machine(), "base": args.base, "dim": args.dim, "index_type": store.factory,
              "queries": args.queries, "rounds": args.rounds, "rows": rows,
              "command": f"python -m bench.delta_cost --base {args.base} --deltas {' '.join(map(str, args.deltas))}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "delta-cost.json").write_text(json.dumps(result, indent=2))
    (args.out / "delta-cost.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [(f"# Search with an exact delta beside the base ({result['base']:,} x {result['dim']}, "
              f"`{result['index_type']}`)"), "",
             (f"`{result['command']}`. Machine: {m['cpu']}, {m['cores']} cores; {m['date'][:16]} UTC. "
              f"{result['queries']} queries one at a time (k=40) per size and round, {result['rounds']} "
              "rounds, sizes interleaved."), "",
             "| delta vectors | delta MB (float32) | delta scan | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    lines += [f"| {r['delta']:,} | {r['delta_mb']} | {r['way']} | {r['p50_ms']} | {r['p99_ms']} |"
              for r in result["rows"]]
    lines += ["", ("`default`: the delta scanned with FAISS's OpenMP threads, as before 2026-11-27; `one thread`: "
                   "`DELTA_SCAN_THREADS = 1`, now. One query is always a single search, k=40.")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

"""A worker's cold start (no snapshot: every live vector read from the database and the base built) at
N vectors: time and peak memory, each run in a fresh child process, for one or more checkouts side by
side, interleaved (these machines are shared and noisy).

    PYTHONPATH=. .venv/bin/python -m bench.scale_cold_start --n 1000000 --repos /tmp/before . --rounds 2

The database is a SQLite file filled once (bench.scale_measure.fill_database) with the padded real
features bench/scale.py uses (bench.scale_data.padded_base). Each run calls that checkout's own
`build_from_database`, as `LiveStore.open` does when no snapshot exists, and reports its wall time and
the child's peak resident memory (`VmHWM`). Writes bench/results/scale/cold-start.{json,md} (at 1M;
cold-start-N.* at other sizes)."""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.attribution import machine

CHILD = """
import json, sys, time
from pathlib import Path
from sqlalchemy.orm import Session
from common.db.session import make_engine
from common.settings import Settings
from indexing import store as s
url, dim, scratch = sys.argv[1], int(sys.argv[2]), sys.argv[3]
params = s.index_params(Settings())
engine = make_engine(url)
with Session(engine) as session:
    started = time.perf_counter()
    try:
        built = s.build_from_database(session, "bench", dim, params, scratch=scratch)
    except TypeError:  # a checkout from before the memory-bounded builder
        built = s.build_from_database(session, "bench", dim, params)
    seconds = time.perf_counter() - started
# VmHWM: this process's own peak. ru_maxrss is not: after fork and exec it starts from the parent's peak.
hwm_kib = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
print(json.dumps({"seconds": round(seconds, 1), "count": built.count(), "index_type": built.factory,
                  "peak_rss_gib": round(hwm_kib / 2**20, 2)}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_cold_start", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repos", nargs="+", type=Path, default=[Path(".")])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", type=Path, default=Path("bench/out/crossdomain"))
    parser.add_argument("--work", type=Path, default=Path("bench/out/scale"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale"))
    args = parser.parse_args(argv)
    from bench.scale import ensure_crossdomain
    from bench.scale_data import padded_base, real_features
    from bench.scale_measure import fill_database
    ensure_crossdomain(args.set)
    real = real_features(args.set, args.work / "features-lite0-0.npz")
    database = args.work / f"cold-{args.n}.db"
    if not database.exists():
        base = padded_base(real.base, args.n, args.work / f"base-{args.n}-0-d.f32", fit_on=real.base[len(real.subjects):])
        started = time.perf_counter()
        fill_database(f"sqlite:///{database.resolve()}.tmp", base, 0)
        os.replace(f"{database}.tmp", database)
        print(f"filled {database} in {time.perf_counter() - started:.0f} s", flush=True)
    result = {"command": "python -m bench.scale_cold_start " + " ".join(argv or sys.argv[1:]), "machine": machine(),
              "n": args.n, "database_gib": round(database.stat().st_size / 2**30, 2), "runs": []}
    name = "cold-start" if args.n == 1_000_000 else f"cold-start-{args.n}"
    for r in range(args.rounds):
        for repo in args.repos:
            run = subprocess.run([sys.executable, "-c", CHILD, f"sqlite:///{database.resolve()}", str(real.base.shape[1]),
                                  str(args.work.resolve())], cwd=repo.resolve(), capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(repo.resolve())})
            if run.returncode:
                raise SystemExit(run.stderr[-3000:])
            row = {"repo": str(repo), "commit": _commit(repo), "round": r, **json.loads(run.stdout.splitlines()[-1])}
            print(json.dumps(row), flush=True)
            result["runs"].append(row)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def _commit(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()


def markdown(result: dict) -> str:
    lines = [f"# Cold start from the database at {result['n']:,} vectors (`{result['command']}`)", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, {result['machine']['date'][:16]} UTC; "
             f"SQLite file of {result['database_gib']} GiB. Each run a fresh child process, checkouts interleaved.", "",
             "| round | checkout | index | seconds | peak RSS, GiB |", "|---|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['commit']} (`{r['repo']}`) | `{r['index_type']}` | {r['seconds']} | {r['peak_rss_gib']} |"
              for r in result["runs"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench.soak`: a bounded soak test of the real stack on loopback.

Starts its own migrated database, queue, uvicorn API and one worker, then N client threads send mixed
traffic (register / re-register / delete works, attribute with and without `wait`, list and read) for a
fixed time. It reports requests by type and status, errors (any 5xx or transport error), latency
percentiles, whether every submitted job ended `done` ("no lost jobs"), and the RSS of the API and the
worker over time, so a leak shows up as a slope."""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.soak_stack import (
    LIVE_WORKS_PER_CLIENT,
    MIX,
    RSS_INTERVAL_S,
    RssSampler,
    Stack,
    create_keys,
    stack_env,
)
from bench.soak_traffic import Ledger, run_clients, verify_jobs
from common.db.schema import reset_schema

# ---------------------------------------------------------------- the report

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def latency_summary(ledger: Ledger) -> dict:
    return {op: {"count": len(values), "statuses": dict(ledger.statuses[op]),
                 **{f"p{q}_ms": round(percentile(values, q) * 1000, 1) for q in (50, 95, 99)},
                 "max_ms": round(max(values) * 1000, 1)}
            for op, values in sorted(ledger.latencies.items())}


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS against time (MB/min)."""
    if len(samples) < 2:
        return 0.0
    ts, ys = [t for t, _ in samples], [y for _, y in samples]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return 0.0 if var == 0 else sum((t - mt) * (y - my) for t, y in samples) / var * 60


def memory_summary(samples: dict[str, list[tuple[float, float]]], warmup_s: float, end_s: float) -> dict:
    """Start = first sample after warm-up; slope over the second half of the run."""
    summary = {}
    for role, points in samples.items():
        after = [p for p in points if p[0] >= warmup_s] or points
        second_half = [p for p in points if p[0] >= end_s / 2] or points
        summary[role] = {"samples": len(points), "start_mb": round(after[0][1], 1) if after else None,
                         "end_mb": round(points[-1][1], 1) if points else None,
                         "max_mb": round(max(y for _, y in points), 1) if points else None,
                         "slope_mb_per_min_second_half": round(slope_mb_per_min(second_half), 3),
                         "series": [[round(t, 1), round(y, 1)] for t, y in points]}
    return summary


def machine_info() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def print_report(report: dict) -> None:
    print(f"\nsoak: {report['config']['clients']} clients, {report['config']['seconds']:.0f}s, "
          f"{report['config']['database']}; {report['requests']} requests, {report['errors']} errors, "
          f"{report['unexpected']} unexpected statuses")
    print(f"{'operation':<16}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}  statuses")
    for op, row in report["latency"].items():
        print(f"{op:<16}{row['count']:>7}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['p99_ms']:>9}{row['max_ms']:>9}"
              f"  {row['statuses']}")
    jobs = report["jobs"]
    print(f"jobs: {jobs['attribution_submitted']} attribution + {jobs['embed_submitted']} embed submitted, "
          f"{jobs['done']} done, {jobs['failed']} failed, {jobs['lost']} lost")
    print(f"{'process':<10}{'start MB':>10}{'end MB':>10}{'max MB':>10}{'MB/min (2nd half)':>20}")
    for role, row in report["memory"].items():
        print(f"{role:<10}{row['start_mb']:>10}{row['end_mb']:>10}{row['max_mb']:>10}"
              f"{row['slope_mb_per_min_second_half']:>20}")


# ---------------------------------------------------------------- orchestration

def run_soak(seconds: float, clients: int, database: str = "sqlite", workdir: Path | None = None,
             max_requests: int = 1_000_000, seed: int = 0) -> dict:
    """Start the stack, run the traffic, drain and verify, and return the report (processes always stopped)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="attrib-soak-"))
    env = stack_env(database, workdir)
    reset_schema(env["ATTRIB_DATABASE_URL"])
    keys = create_keys(env["ATTRIB_DATABASE_URL"])
    stack, sampler, ledger = Stack(env, workdir), None, Ledger()
    try:
        stack.start()
        sampler = RssSampler(stack.pids())
        sampler.start()
        started = time.monotonic()
        run_clients(stack.url, keys, clients, seconds, ledger, max_requests, seed)
        traffic_s = time.monotonic() - started
        jobs = verify_jobs(stack.url, keys["admin"], ledger)
        sampler.stop()
        for role, process in stack.processes.items():
            if process.poll() is not None:
                ledger.errors.append(f"{role} exited with {process.returncode}")
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        stack.stop()
    warmup_s = min(60.0, traffic_s * 0.2)
    return {"config": {"seconds": seconds, "clients": clients, "database": database, "mix": MIX,
                       "live_works_per_client": LIVE_WORKS_PER_CLIENT, "warmup_s": warmup_s,
                       "rss_interval_s": RSS_INTERVAL_S, "workdir": str(workdir)},
            "machine": machine_info(), "traffic_seconds": round(traffic_s, 1),
            "requests": sum(sum(c.values()) for c in ledger.statuses.values()),
            "errors": len(ledger.errors), "error_samples": ledger.errors[:20],
            "unexpected": len(ledger.unexpected), "unexpected_samples": ledger.unexpected[:20],
            "latency": latency_summary(ledger), "jobs": jobs,
            "memory": memory_summary(sampler.samples, warmup_s, traffic_s)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql resets the schema of ATTRIB_TEST_POSTGRES_URL (default: the test db)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop earlier after this many (all clients)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the report here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run_soak(args.minutes * 60, args.clients, args.database, max_requests=args.max_requests,
                      seed=args.seed)
    print_report(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        from bench.plot_soak import plot_memory
        print(f"report written to {args.out} and {plot_memory(report, args.out.with_suffix('.png'))}")
    jobs = report["jobs"]
    return 0 if report["errors"] == 0 and jobs["lost"] == 0 and jobs["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

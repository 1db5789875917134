"""Latency of /healthz and of another client's request while many clients hold `?wait` (issue 7, #2).

    python -m bench.waits [--waiters 64] [--threads 8] [--rounds 3] [--out bench/results/hostile]

Starts a real uvicorn API (SQLite, no worker, so every wait lasts its full `wait`) with a small thread
pool (`ATTRIB_API_THREADS`), then alternates two phases per round, interleaved so both see the same
machine noise: `idle` (nobody waits) and `saturated` (`--waiters` concurrent POST /attribute?wait=W
from one key, more than the pool has threads). In each phase it times GET /healthz and a second key's
GET /sources. Before the fix, the saturated phase timed out (every thread held by a waiter)."""
import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.soak_stack import PHOTOS, Stack, create_keys, stack_env

WAIT_S = 15


def timed(client: httpx.Client, url: str, headers: dict, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(url, headers=headers, timeout=60)
        response.raise_for_status()
        out.append((time.perf_counter() - start) * 1000)
    return out


def hold_waits(base: str, key: str, n: int, image: bytes, started: threading.Barrier) -> list[threading.Thread]:
    def one() -> None:
        with httpx.Client() as client:
            started.wait()
            client.post(f"{base}/attribute?wait={WAIT_S}", headers={"Authorization": f"Bearer {key}"},
                        files={"image": ("q.jpg", image, "image/jpeg")}, timeout=WAIT_S + 60)
    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads


def summary(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {"n": len(ms), "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1), "max_ms": round(ordered[-1], 1)}


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-waits-"))
    env = stack_env("sqlite", workdir) | {"ATTRIB_API_THREADS": str(args.threads)}
    import os
    os.environ.update(env)
    from common.db.schema import reset_schema
    reset_schema(env["ATTRIB_DATABASE_URL"])
    keys = create_keys(env["ATTRIB_DATABASE_URL"])
    other = create_keys(env["ATTRIB_DATABASE_URL"])["admin"]
    stack = Stack(env, workdir)
    stack._spawn("api", [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                         str(stack.port), "--log-level", "warning"])
    image = (PHOTOS / "dog" / "01.jpg").read_bytes()
    phases = {"idle": {"healthz": [], "other_client": []}, "saturated": {"healthz": [], "other_client": []}}
    try:
        with httpx.Client() as client:
            _wait_up(client, stack.url)
            for _ in range(args.rounds):
                for phase in ("idle", "saturated"):
                    threads = []
                    if phase == "saturated":
                        barrier = threading.Barrier(args.waiters + 1)
                        threads = hold_waits(stack.url, keys["attributor"], args.waiters, image, barrier)
                        barrier.wait()
                        time.sleep(3)  # let every upload pass its check and start waiting
                    phases[phase]["healthz"] += timed(client, f"{stack.url}/healthz", {}, args.samples)
                    phases[phase]["other_client"] += timed(client, f"{stack.url}/sources",
                                                           {"Authorization": f"Bearer {other}"}, args.samples)
                    for thread in threads:
                        thread.join()
    finally:
        stack.stop()
    return {"machine": f"{platform.node()} ({platform.processor() or platform.machine()}), shared with other "
                       "jobs: noisy", "waiters": args.waiters, "api_threads": args.threads, "wait_s": WAIT_S,
            "rounds": args.rounds,
            "results": {p: {k: summary(v) for k, v in d.items()} for p, d in phases.items()}}


def _wait_up(client: httpx.Client, base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise RuntimeError("API did not start")


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "waits.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [f"| {phase} | {what} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} |"
            for phase, d in report["results"].items() for what, s in d.items()]
    (out / "waits.md").write_text(
        f"# Latency while {report['waiters']} clients hold `?wait={report['wait_s']}` "
        f"(API pool: {report['api_threads']} threads)\n\n{report['machine']}; {report['rounds']} interleaved rounds.\n\n"
        "| phase | request | n | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.waits", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiters", type=int, default=64)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/hostile"))
    args = parser.parse_args(argv)
    report = run(args)
    write(report, args.out)
    print(json.dumps(report["results"], indent=2))


if __name__ == "__main__":
    main()

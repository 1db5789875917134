"""POST /attribute enqueue latency of two checkouts side by side (issue 8: open-loop p99 <= 50 ms at half
the saturation rate), for a change to the API's request path.

    PYTHONPATH=. .venv/bin/python -m bench.enqueue_ab --repos /tmp/old-checkout . --rate 100 --rounds 2

The API alone (`--api-workers` uvicorn processes, no worker: nothing drains the queue, as in the ingest
bench's enqueue part), from each checkout in turn, alternated for `--rounds`: a closed loop (32 connections,
8 s) gives the saturation rate, then an open loop at the FIXED `--rate` (the same for both checkouts, about
half their saturation) gives p50/p99 counted from each request's scheduled time. Both checkouts use this
checkout's virtual environment and the same database and Redis (ATTRIB_TEST_POSTGRES_URL /
ATTRIB_TEST_REDIS_URL). Writes `--out` (JSON) and prints one line per run."""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.attribution import machine
from bench.ingest import prepared_stack_env
from bench.ingest_load import _closed_loop, _open_loop, query_photos, server_durations
from bench.soak_stack import free_port


def one_run(repo: Path, env: dict, key: str, photo: bytes, args, work: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / f"api-{repo.name or 'repo'}.log"
    with open(log_path, "ab") as log:
        api = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                                str(port), "--workers", str(args.api_workers), "--log-level", "warning"],
                               cwd=repo, stdout=log, stderr=log, env={**os.environ, **env, "PYTHONPATH": str(repo)})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"the API of {repo} did not start; see {work}")
        asyncio.run(_closed_loop(url, key, photo, 8, 2))  # warm-up: connections, caches
        closed = asyncio.run(_closed_loop(url, key, photo, args.connections, 8))
        opened = asyncio.run(_open_loop(url, key, photo, args.connections, args.rate, args.seconds))
    finally:
        api.terminate()
        api.wait(30)
    return {"repo": str(repo), "saturation_per_s": round(closed["rate_per_s"], 1), "closed_p50_ms": closed.get("p50_ms"),
            "open_rate_per_s": args.rate, "open_p50_ms": opened.get("p50_ms"), "open_p99_ms": opened.get("p99_ms"),
            "open_client_lag_p99_ms": opened["client_lag"].get("p99_ms"),
            "open_from_send_p99_ms": opened["from_send"].get("p99_ms"),
            "open_server": server_durations(log_path, opened["request_id_prefix"]),
            "errors": closed["errors"] + opened["errors"], "load_average": round(os.getloadavg()[0], 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.enqueue_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", nargs=2, type=Path, required=True, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--rate", type=float, default=100, help="open-loop requests/s, the same for both")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("bench/out/enqueue-ab"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest/enqueue-ab.json"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    env, keys = prepared_stack_env("postgresql", args.work)
    photo, runs = query_photos()[0], []
    for round_ in range(args.rounds):
        for repo in args.repos:
            run = {"round": round_, **one_run(repo.resolve(), env, keys["attributor"], photo, args, args.work)}
            print(json.dumps(run), flush=True)
            runs.append(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python -m bench.enqueue_ab " + " ".join(argv or sys.argv[1:]),
                                    "machine": machine(), "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

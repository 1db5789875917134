"""POST /attribute enqueue latency of two checkouts side by side (issue 8: open-loop p99 <= 50 ms at half
the saturation rate), for a change to the API's request path.

    PYTHONPATH=. .venv/bin/python -m bench.enqueue_ab --repos /tmp/old-checkout . --rate 100 --rounds 2

The API alone (`--api-workers` uvicorn processes, no worker: nothing drains the queue, as in the ingest
bench's enqueue part), from each checkout in turn, alternated for `--rounds`: a closed loop (32 connections,
8 s) gives the saturation rate, then an open loop at the FIXED `--rate` (the same for both checkouts, about
half their saturation) gives p50/p99 counted from each request's scheduled time. Both checkouts use this
checkout's virtual environment and the same database and Redis (ATTRIB_TEST_POSTGRES_URL /
ATTRIB_TEST_REDIS_URL). `--env-before` / `--env-after` give one side extra settings, so one checkout can be
run against itself with a switch flipped:

    ... --repos . . --env-before ATTRIB_GC_FREEZE=false --env-after ATTRIB_GC_FREEZE=true

Each run also reports the slow garbage collections the API processes logged during its open loop.
Writes `--out` (JSON) and a markdown table beside it (same name, `.md`), and prints one line per run."""
import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.attribution import machine
from bench.ingest import prepared_stack_env
from bench.ingest_load import _closed_loop, _open_loop, query_photos, server_durations
from bench.soak_stack import free_port


GC_PAUSE = re.compile(r"garbage collection of generation (\d) took ([0-9.]+) ms")


def one_run(repo: Path, env: dict, key: str, photo: bytes, args, work: Path, log_name: str) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / f"api-{log_name}.log"
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
        open_from = log_path.stat().st_size
        opened = asyncio.run(_open_loop(url, key, photo, args.connections, args.rate, args.seconds))
    finally:
        api.terminate()
        api.wait(30)
    return {"repo": str(repo), "saturation_per_s": round(closed["rate_per_s"], 1), "closed_p50_ms": closed.get("p50_ms"),
            "open_rate_per_s": args.rate, "open_p50_ms": opened.get("p50_ms"), "open_p99_ms": opened.get("p99_ms"),
            "open_client_lag_p99_ms": opened["client_lag"].get("p99_ms"),
            "open_from_send_p99_ms": opened["from_send"].get("p99_ms"),
            "open_server": server_durations(log_path, opened["request_id_prefix"]),
            "open_slow_collections": slow_collections(log_path, open_from),
            "errors": closed["errors"] + opened["errors"], "load_average": round(os.getloadavg()[0], 2)}


def slow_collections(log_path: Path, offset: int) -> dict:
    """The API processes' logged slow garbage collections (common/gc_tuning.py: those over
    ATTRIB_GC_LOG_SLOW_MS) past `offset` in their log: how many, per generation, and the longest."""
    with open(log_path, errors="replace") as log:
        log.seek(offset)
        pauses = [(int(m.group(1)), float(m.group(2))) for line in log if (m := GC_PAUSE.search(line))]
    return {"count": len(pauses), "by_generation": {g: sum(1 for gen, _ in pauses if gen == g) for g in (0, 1, 2)},
            "longest_ms": max((ms for _, ms in pauses), default=0.0), "total_ms": round(sum(ms for _, ms in pauses), 1)}


def markdown(result: dict) -> str:
    """The runs as a table, then each side's median p99 (client and server) over its rounds."""
    machine_ = result["machine"]
    lines = ["# POST /attribute enqueue, two sides alternated", "",
             (f"{machine_['cpu']}, {machine_['cores']} cores, {machine_['date'][:10]}; API only, open loop at a "
              "fixed rate, counted from each request's scheduled time. Command:"), "", f"`{result['command']}`", "",
             ("| round | side | extra environment | saturation /s | open-loop p50 / p99 ms | server's own p99 ms "
              "| slow collections (gen 0/1/2) | longest ms | their total ms |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for run in result["runs"]:
        env = " ".join(f"{k}={v}" for k, v in run["env"].items()) or "-"
        gc_ = run.get("open_slow_collections") or {"count": 0, "by_generation": {}, "longest_ms": 0.0, "total_ms": 0.0}
        by_generation = {str(g): n for g, n in gc_["by_generation"].items()}  # int keys in memory, str from JSON
        generations = "/".join(str(by_generation.get(str(g), 0)) for g in (0, 1, 2))
        lines.append(f"| {run['round']} | {run['side']} | {env} | {run['saturation_per_s']} | {run['open_p50_ms']} / "
                     f"{run['open_p99_ms']} | {run['open_server'].get('p99_ms', '-')} | {gc_['count']} ({generations}) "
                     f"| {gc_['longest_ms']} | {gc_['total_ms']} |")
    lines.append("")
    for side in ("before", "after"):
        runs = [run for run in result["runs"] if run["side"] == side]
        client = [run["open_p99_ms"] for run in runs if run["open_p99_ms"] is not None]
        server = [run["open_server"]["p99_ms"] for run in runs if run["open_server"].get("p99_ms") is not None]
        if client:
            lines.append(f"- {side}: median open-loop p99 {statistics.median(client):.1f} ms over {len(client)} runs "
                         f"(range {min(client)}-{max(client)}), server's own "
                         + (f"{statistics.median(server):.1f} ms" if server else "not logged"))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.enqueue_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", nargs=2, type=Path, required=True, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--rate", type=float, default=100, help="open-loop requests/s, the same for both")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--env-before", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra environment of the BEFORE side's API (e.g. ATTRIB_GC_FREEZE=false: one checkout twice)")
    parser.add_argument("--env-after", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=Path("bench/out/enqueue-ab"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest/enqueue-ab.json"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    env, keys = prepared_stack_env("postgresql", args.work)
    photo, runs = query_photos()[0], []
    extra = [dict(pair.split("=", 1) for pair in pairs) for pairs in (args.env_before, args.env_after)]
    for round_ in range(args.rounds):
        for side, (repo, side_env) in enumerate(zip(args.repos, extra)):
            name = ("before", "after")[side]
            run = {"round": round_, "side": name, "env": side_env,
                   **one_run(repo.resolve(), {**env, **side_env}, keys["attributor"], photo, args, args.work,
                             f"{name}-{round_}")}
            print(json.dumps(run), flush=True)
            runs.append(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"command": "python -m bench.enqueue_ab " + " ".join(argv or sys.argv[1:]), "machine": machine(),
              "runs": runs}
    args.out.write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

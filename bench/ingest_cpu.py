"""Where the CPU goes during a bulk import (issue 8, ingest ratio): CPU seconds of the API process tree
(uvicorn workers and their decoder children) and of the worker, per image, against the machine's total
and its capacity, with and without one attribution a second offered. The ingest benchmark gives the
ratio; this says whether the stack is short of CPU or waits on something.

    PYTHONPATH=. .venv/bin/python -m bench.ingest_cpu [--images 600]

Writes bench/results/ingest/cpu.json. Uses the same stack and images as bench.ingest (PostgreSQL and
Redis from ATTRIB_TEST_POSTGRES_URL / ATTRIB_TEST_REDIS_URL)."""
import argparse
import json
import os
import time
from pathlib import Path

from bench.attribution import machine
from bench.ingest import IngestStack, descendants, pending_images, prepared_stack_env
from bench.ingest_load import AttributionProber, bulk_upload, make_images, query_photos


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system, children reaped or alive) of a process and its descendants."""
    total = 0
    for pid in descendants([root]):
        try:
            total += sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15])
        except OSError:  # ended meanwhile
            continue
    return total / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(x) for i, x in enumerate(fields) if i not in (3, 4)) / os.sysconf("SC_CLK_TCK")


def one_import(paths: list[Path], work: Path, probe: bool) -> dict:
    workdir = work / f"run-{time.time_ns()}"
    workdir.mkdir(parents=True)
    env, keys = prepared_stack_env("postgresql", workdir)
    stack = IngestStack(env, workdir, 2, layout="single").start()  # as its committed figures
    try:
        time.sleep(3)
        pids = stack.pids()
        before = {role: tree_cpu(pid) for role, pid in pids.items()}
        machine_before, started = machine_cpu(), time.monotonic()
        prober = AttributionProber(stack.url, keys["attributor"], query_photos()) if probe else None
        if prober:
            prober.start()
        bulk_upload(stack.url, keys["admin"], paths, 2, 50, 2)
        uploaded_s = time.monotonic() - started
        while pending_images(env["ATTRIB_DATABASE_URL"]) > 0:
            time.sleep(0.2)
        seconds = time.monotonic() - started
        if prober:
            prober.stop()
        cpu = {role: tree_cpu(pid) - before[role] for role, pid in pids.items()}
        busy = machine_cpu() - machine_before
    finally:
        stack.stop()
    return {"probe": probe, "images": len(paths), "upload_s": round(uploaded_s, 1), "seconds": round(seconds, 1),
            "images_per_s": round(len(paths) / seconds, 1),
            "cpu_ms_per_image": {role: round(v / len(paths) * 1000, 1) for role, v in cpu.items()},
            "worker_cores": round(cpu["worker"] / seconds, 2),
            "machine_busy_pct": round(100 * busy / (seconds * os.cpu_count()), 1)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_cpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--work", type=Path, default=Path("bench/out/ingest"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest"))
    args = parser.parse_args(argv)
    paths = make_images(args.work / "images", args.images)
    result = {"machine": machine(), "load_average_before": os.getloadavg(),
              "runs": [one_import(paths, args.work, probe) for probe in (False, True)],
              "load_average_after": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

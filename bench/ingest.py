"""Ingest and enqueue benchmark (issue 8, parts 3-5), on loopback against a real stack.

    python -m bench.ingest                 # 2,000 images (the issue's size), ~10-15 min on 2 shared cores
    python -m bench.ingest --images 300 --probe-seconds 10 --saturation-seconds 6    # a quick look

Measured side by side in one run, because the machine is shared and noisy:
1. bare decode+embed throughput (this process: read files, decode, preprocess, forward; the worker's own
   pipeline and settings), interleaved with the import: the import runs in --segments parts with a bare
   measurement before each and after the last (this machine's speed drifts within minutes);
2. attribution latency with one attribution per second offered, idle (before and after) and during the
   import of every image through POST /sources/bulk;
3. POST /attribute saturation (closed loop, 32 connections, no worker draining the queue) and p99 at an
   open-loop 50 % of that rate, for 1 and for N API processes.
Writes bench/results/ingest/ingest.json, ingest.md and ingest.png (the PNG is not committed)."""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path


from bench.ingest_load import (
    AttributionProber, bulk_upload, enqueue_saturation, make_images, query_photos, wait_overhead,
)
from bench.ingest_report import write_report
from bench.soak_stack import REPO, Stack, create_keys, stack_env


class IngestStack(Stack):
    """The soak stack with N uvicorn processes and a worker that can be stopped on its own."""

    def __init__(self, env, workdir, api_workers: int):
        super().__init__(env, workdir)
        self.api_workers = api_workers

    def start(self, timeout: float = 300) -> "IngestStack":
        self.start_api(self.api_workers)
        self._spawn("worker", [sys.executable, "-m", "worker", "--name", f"ingest-{os.getpid()}"])
        self._wait_ready(timeout)
        return self

    def start_api(self, workers: int) -> None:
        self.stop_role("api")
        self._spawn("api", [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                            str(self.port), "--workers", str(workers), "--log-level", "warning"])

    def stop_role(self, role: str) -> None:
        process = self.processes.pop(role, None)
        if process and process.poll() is None:
            process.terminate()
            process.wait(timeout=30)

    def wait_api(self, timeout: float = 60) -> None:
        self._wait_ready(timeout, probe="/healthz")


def prepared_stack_env(database: str, workdir: Path) -> tuple[dict, dict]:
    """(env, keys) for an ingest stack: a fresh schema, the bench's keys, the worker's own thread default and
    queue bounds lifted (the benches measure the service, not its admission limits); env also set here."""
    env = {**stack_env(database, workdir), "ATTRIB_TORCH_THREADS": "0",
           "ATTRIB_MAX_QUEUED_ATTRIBUTIONS": str(10**9), "ATTRIB_MAX_QUEUED_EMBED_JOBS": str(10**9)}
    os.environ.update(env)
    from common.db.schema import reset_schema
    reset_schema(env["ATTRIB_DATABASE_URL"])
    return env, create_keys(env["ATTRIB_DATABASE_URL"])


def bare_rate(paths: list[Path], settings) -> dict:
    """Images/s of read + decode + preprocess + forward with the worker's pipeline, no service around it."""
    import torch

    from core.encoder import load_encoder
    from worker.batch_embed import forward_batch_size, make_feeder
    torch.set_num_threads(settings.torch_threads)
    encoder = _encoder_cache.get("lite0") or load_encoder(settings.encoder).use_channels_last(settings.channels_last)
    _encoder_cache["lite0"] = encoder
    feeder = make_feeder(encoder, settings, "cpu")
    items = [(i, (lambda p=p: p.read_bytes())) for i, p in enumerate(paths)]
    start = time.monotonic()
    for batch in feeder.batches(items, forward_batch_size(settings, "cpu")):
        encoder.embed_tensor(batch.tensor)
    seconds = time.monotonic() - start
    return {"images": len(paths), "seconds": round(seconds, 2), "images_per_s": round(len(paths) / seconds, 2)}


_encoder_cache: dict = {}


def pending_images(url: str) -> int:
    from sqlalchemy import text

    from common.db.session import make_engine
    engine = _engines.setdefault(url, make_engine(url))
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM source_images WHERE state = 'pending'")).scalar())


_engines: dict = {}


def probe(stack, key: str, photos, seconds: float) -> list[dict]:
    prober = AttributionProber(stack.url, key, photos)
    prober.start()
    time.sleep(seconds)
    return prober.stop()


def interleaved_import(stack, keys: dict, paths: list[Path], photos, args, db_url: str, settings) -> dict:
    """The import in `args.segments` parts with a bare measurement before each part and after the last:
    this shared machine's speed drifts by up to 1.5x within minutes (bare 29-47 images/s in one hour), so
    a ratio against one bare run before and one after a long import measures the drift. Each part's
    neighbours give its own baseline; the rates are totals over all parts."""
    parts = [paths[i::args.segments] for i in range(args.segments)]
    bare, imports = [bare_rate(paths[:args.bare_images], settings)], []
    for number, part in enumerate(parts):
        imports.append(run_import(stack, keys, part, photos, args, db_url, batch=f"s{number}-"))
        bare.append(bare_rate(paths[:args.bare_images], settings))
    seconds = sum(i["seconds"] for i in imports)
    summary = {k: sum(i["upload"]["summary"].get(k, 0) for i in imports) for k in ("created", "duplicate", "refused")}
    total = {"images": len(paths), "upload_seconds": round(sum(i["upload_seconds"] for i in imports), 2),
             "seconds": round(seconds, 2), "images_per_s": round(len(paths) / seconds, 2),
             "left_pending": imports[-1]["left_pending"], "upload": {"summary": summary},
             "attributions": [a for i in imports for a in i["attributions"]]}
    bare_total = {"images": sum(b["images"] for b in bare), "seconds": round(sum(b["seconds"] for b in bare), 2)}
    bare_total["images_per_s"] = round(bare_total["images"] / bare_total["seconds"], 2)
    return {"import": total, "bare": bare_total, "bare_runs": bare,
            "segments": [{"images": i["images"], "seconds": i["seconds"], "images_per_s": i["images_per_s"],
                          "ratio_to_neighbours": round(i["images_per_s"] / ((b0["images_per_s"] + b1["images_per_s"]) / 2), 3)}
                         for i, b0, b1 in zip(imports, bare, bare[1:])]}


def run_import(stack, keys: dict, paths: list[Path], photos, args, db_url: str, batch: str = "") -> dict:
    """Every image through the bulk path while one attribution per second is offered."""
    prober = AttributionProber(stack.url, keys["attributor"], photos)
    prober.start()
    start = time.monotonic()
    upload = bulk_upload(stack.url, keys["admin"], paths, args.per_item, args.per_request, args.uploaders, batch)
    uploaded = time.monotonic() - start
    while pending_images(db_url) > 0 and time.monotonic() - start < args.import_timeout:
        time.sleep(0.1)  # the end is seen within 0.1 s (a 0.5 s poll added ~1 % to a 20 s part)
    seconds = time.monotonic() - start
    samples = prober.stop()
    return {"images": len(paths), "upload_seconds": round(uploaded, 2), "seconds": round(seconds, 2),
            "images_per_s": round(len(paths) / seconds, 2), "left_pending": pending_images(db_url),
            "upload": upload, "attributions": samples}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average": os.getloadavg()}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--bare-images", type=int, default=128, help="images per bare-throughput measurement")
    parser.add_argument("--segments", type=int, default=4,
                        help="the import runs in this many parts, a bare measurement before each and after the last")
    parser.add_argument("--per-item", type=int, default=2, help="images per work")
    parser.add_argument("--per-request", type=int, default=50, help="works per bulk request")
    parser.add_argument("--uploaders", type=int, default=2)
    parser.add_argument("--probe-seconds", type=float, default=30)
    parser.add_argument("--saturation-seconds", type=float, default=12)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--import-timeout", type=float, default=1200)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "ingest")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingest")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the stack's processes
    paths = make_images(args.work / "images", args.images)
    workdir = args.work / f"run-{int(time.time())}"
    workdir.mkdir(parents=True)
    env, keys = prepared_stack_env(args.database, workdir)
    from common.settings import Settings
    settings = Settings()
    photos = query_photos()
    result = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
              "settings": {k: getattr(settings, k) for k in ("torch_threads", "embed_batch_size", "channels_last",
                                                             "decode_workers", "embed_job_images")}}
    stack = IngestStack(env, workdir, args.api_workers).start()
    try:
        result["idle_before"] = probe(stack, keys["attributor"], photos, args.probe_seconds)
        result["wait_overhead"] = wait_overhead(stack.url, keys["attributor"], photos)
        result.update(interleaved_import(stack, keys, paths, photos, args, env["ATTRIB_DATABASE_URL"], settings))
        result["idle_after"] = probe(stack, keys["attributor"], photos, args.probe_seconds)
        stack.stop_role("worker")  # the enqueue path alone: nothing drains the queue meanwhile
        result["enqueue"] = {}
        for workers in sorted({1, args.api_workers}, reverse=True):
            stack.start_api(workers)
            stack.wait_api()
            result["enqueue"][workers] = enqueue_saturation(stack.url, keys["attributor"], photos[0],
                                                            args.connections, args.saturation_seconds)
    finally:
        stack.stop()
    result["machine"]["load_average_after"] = os.getloadavg()
    result["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                   text=True).stdout.strip()
    write_report(result, args.out)
    print(json.dumps(result.get("summary", {}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

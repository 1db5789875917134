"""Ingest and enqueue benchmark (issue 8, parts 3-5), on loopback against a real stack.

    python -m bench.ingest                 # 2,000 images (the issue's size), ~10-15 min on 2 shared cores
    python -m bench.ingest --images 300 --probe-seconds 10 --saturation-seconds 6    # a quick look

Measured side by side in one run, because the machine is shared and noisy:
1. bare decode+embed throughput (this process: read files, decode, preprocess, forward; the worker's own
   pipeline and settings), interleaved with the import: every --slice-seconds the stack is frozen
   (SIGSTOP) for a bare measurement, and the import's time excludes the frozen intervals (this
   machine's speed drifts within minutes; see sliced_import);
2. attribution latency with one attribution per second offered, idle (before and after) and during the
   import of every image through POST /sources/bulk. With --quiet-slices (default) every second slice
   runs without attributions, so the ingest ratio is reported both ways: the import while it also serves
   one attribution a second, and the import alone;
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
import threading
import time
from pathlib import Path


from bench.ingest_load import (
    AttributionProber, bulk_upload, enqueue_saturation, make_images, query_photos, wait_overhead,
)
from bench.ingest_report import write_report
from bench.soak_stack import REPO, Stack, create_keys, stack_env


LAYOUTS = ("split", "single")


class IngestStack(Stack):
    """The soak stack with N uvicorn processes and a worker that can be stopped on its own."""

    def __init__(self, env, workdir, api_workers: int, layout: str = "split"):
        super().__init__(env, workdir)
        self.api_workers, self.layout = api_workers, layout

    def start(self, timeout: float = 300) -> "IngestStack":
        """`split`: an embedding worker beside a dedicated attribution worker (the default launch,
        scripts/stack.sh); `single`: one worker serving both queues (ATTRIB_ATTRIBUTION_WORKERS=0)."""
        self.start_api(self.api_workers)
        roles = ({"worker": ["--queues", "embed"], "attribution-worker": ["--queues", "attribute"]}
                 if self.layout == "split" else {"worker": []})
        for role, queues in roles.items():
            self._spawn(role, [sys.executable, "-m", "worker", "--name", f"ingest-{role}-{os.getpid()}", *queues])
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
    return _count(url, "state = 'pending'")


def done_images(url: str) -> int:
    """Images embedded (or failed): grows by what the worker finished, whatever is still being uploaded."""
    return _count(url, "state <> 'pending'")


def _count(url: str, where: str) -> int:
    from sqlalchemy import text

    from common.db.session import make_engine
    engine = _engines.setdefault(url, make_engine(url))
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM source_images WHERE {where}")).scalar())


_engines: dict = {}


def probe(stack, key: str, photos, seconds: float, poll_s: float) -> list[dict]:
    prober = AttributionProber(stack.url, key, photos, poll_s=poll_s)
    prober.start()
    time.sleep(seconds)
    return prober.stop()


class Frozen:
    """The stack's processes (API, its workers and decoder children, the worker) stopped with SIGSTOP,
    continued on exit. PostgreSQL and Redis are not frozen: they are idle once their clients are."""

    def __init__(self, roots: list[int]):
        self.pids = descendants(roots)

    def __enter__(self) -> "Frozen":
        for pid in self.pids:
            _signal(pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc) -> None:
        for pid in self.pids:
            _signal(pid, signal.SIGCONT)


def descendants(roots: list[int]) -> list[int]:
    """These processes and all their descendants (read from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += [child for child, parent in parents.items() if parent == pid]
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def sliced_import(stack, keys: dict, paths: list[Path], photos, args, db_url: str, settings) -> dict:
    """Every image through POST /sources/bulk, in one continuous import, cut into time slices.

    This shared machine's speed drifts by up to 1.5x within minutes (bare 24-47 images/s within one
    hour), so a bare run before and after the import measures the drift as much as the service. Every
    `args.slice_seconds` the whole stack is frozen (SIGSTOP) while a bare run measures this moment's
    speed, then continued: the import's time excludes the frozen intervals, and each slice has a bare
    run on either side. An import cut into separate parts instead pays a start-up each part (the first
    request's upload and checks before the first embedding job), which a single import pays once.
    With `args.quiet_slices`, every second slice is run without attributions offered, so the ratio is
    reported for the import serving one attribution a second and for the import alone. Before each
    freeze the prober stops and its in-flight attributions finish, so no latency sample spans a freeze."""
    upload: dict = {}
    uploader = threading.Thread(target=lambda: upload.update(bulk_upload(
        stack.url, keys["admin"], paths, args.per_item, args.per_request, args.uploaders)))
    bare, slices, samples = [bare_rate(paths[:args.bare_images], settings)], [], []
    done_before, started = done_images(db_url), time.monotonic()
    uploader.start()
    while True:
        offered = not (args.quiet_slices and len(slices) % 2 == 1)
        prober = (AttributionProber(stack.url, keys["attributor"], photos, poll_s=args.poll_ms / 1000)
                  if offered else None)
        if prober:
            prober.start()
        slice_start, uploading = time.monotonic(), uploader.is_alive()
        while time.monotonic() - slice_start < args.slice_seconds and not _finished(uploader, db_url):
            time.sleep(0.1)
        samples += prober.stop() if prober else []
        seconds = time.monotonic() - slice_start
        finished = _finished(uploader, db_url)
        with Frozen(list(stack.pids().values())):
            done = done_images(db_url)
            slices.append({"seconds": round(seconds, 2), "images": done - done_before,
                           "images_per_s": round((done - done_before) / seconds, 2), "attributions_offered": offered,
                           "uploading": uploading})
            done_before = done
            bare.append(bare_rate(paths[:args.bare_images], settings))
        if finished or time.monotonic() - started > args.import_timeout:
            break
    uploader.join()
    return _sliced_summary(upload, slices, bare, samples, db_url)


def _finished(uploader: threading.Thread, db_url: str) -> bool:
    return not uploader.is_alive() and pending_images(db_url) == 0


def _sliced_summary(upload: dict, slices: list[dict], bare: list[dict], samples: list[dict], db_url: str) -> dict:
    def rate(group: list[dict]) -> dict:
        images, seconds = sum(s["images"] for s in group), sum(s["seconds"] for s in group)
        return {"images": images, "seconds": round(seconds, 2), "images_per_s": round(images / seconds, 2)}
    total = {**rate(slices), "left_pending": pending_images(db_url), "upload": upload, "attributions": samples}
    for offered, key in ((True, "with_attributions"), (False, "without_attributions")):
        group = [s for s in slices if s["attributions_offered"] == offered]
        if group:
            total[key] = rate(group)
    bare_total = {"images": sum(b["images"] for b in bare), "seconds": round(sum(b["seconds"] for b in bare), 2)}
    bare_total["images_per_s"] = round(bare_total["images"] / bare_total["seconds"], 2)
    for s, b0, b1 in zip(slices, bare, bare[1:]):
        s["ratio_to_neighbours"] = round(s["images_per_s"] / ((b0["images_per_s"] + b1["images_per_s"]) / 2), 3)
    return {"import": total, "bare": bare_total, "bare_runs": bare, "slices": slices}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average": os.getloadavg()}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--bare-images", type=int, default=48, help="images per bare-throughput measurement")
    parser.add_argument("--slice-seconds", type=float, default=8.0,
                        help="the import runs this long between two bare measurements (the stack frozen meanwhile)")
    parser.add_argument("--quiet-slices", action=argparse.BooleanOptionalAction, default=True,
                        help="every second slice runs without attributions offered: the ratio is then reported "
                             "with and without them")
    parser.add_argument("--per-item", type=int, default=2, help="images per work")
    parser.add_argument("--per-request", type=int, default=50, help="works per bulk request")
    parser.add_argument("--uploaders", type=int, default=2)
    parser.add_argument("--probe-seconds", type=float, default=30)
    parser.add_argument("--poll-ms", type=float, default=0,
                        help="the attribution client polls GET /attribute/{id} this often instead of asking "
                             "with ?wait= (0, the default: the README's client)")
    parser.add_argument("--saturation-seconds", type=float, default=12)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--layout", choices=LAYOUTS, default="split",
                        help="split: an embedding worker beside a dedicated attribution worker (the default "
                             "launch); single: one worker serving both queues")
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
              "settings": {k: getattr(settings, k) for k in (
                  "torch_threads", "embed_batch_size", "channels_last", "decode_workers", "embed_job_images",
                  "embed_worker_nice")}}
    stack = IngestStack(env, workdir, args.api_workers, args.layout).start()
    try:
        result["idle_before"] = probe(stack, keys["attributor"], photos, args.probe_seconds, args.poll_ms / 1000)
        result["wait_overhead"] = wait_overhead(stack.url, keys["attributor"], photos)
        result.update(sliced_import(stack, keys, paths, photos, args, env["ATTRIB_DATABASE_URL"], settings))
        result["idle_after"] = probe(stack, keys["attributor"], photos, args.probe_seconds, args.poll_ms / 1000)
        for role in ("worker", "attribution-worker"):  # the enqueue path alone: nothing drains the queue meanwhile
            stack.stop_role(role)
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

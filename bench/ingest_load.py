"""Load the ingest benchmark offers a running stack (bench.ingest): transformed copies of the DreamBooth
photos, bulk uploads, one attribution per second, and the closed- and open-loop enqueue tests."""
import asyncio
import io
import json
import random
import re
import threading
import time
import uuid
from pathlib import Path

import httpx
from PIL import Image

from bench.photo_variants import jpeg_quality, photo_variant
from bench.soak_stack import REPO

SOURCES = [Path("/work/shared/data/dreambooth"), REPO / "demo" / "data" / "dreambooth"]


def make_images(out: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` distinct JPEGs (random crop, flip, colour, size, quality) made from the DreamBooth photos."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{i:05d}.jpg" for i in range(count)]
    if all(p.exists() for p in paths):
        return paths
    photos = sorted(p for source in SOURCES if source.is_dir() for p in source.glob("*/*.jpg"))
    rng = random.Random(seed)
    for path in paths:
        image = photo_variant(Image.open(rng.choice(photos)).convert("RGB"), rng, (320, 512))
        image.save(path, "JPEG", quality=jpeg_quality(rng))
    return paths


def query_photos() -> list[bytes]:
    return [p.read_bytes() for source in SOURCES if source.is_dir() for p in sorted(source.glob("*/0[2-4].jpg"))]


class AttributionProber(threading.Thread):
    """Offers one attribution per `interval_s` (open loop: each in its own thread) and records, per
    request, the time from submit to having the result, and the server's own created_at -> finished_at.

    By default the client is the one the README shows: `POST /attribute?wait=` answers with the result
    (it falls back to polling only if the wait times out). `poll_s` > 0 instead polls
    `GET /attribute/{id}` every `poll_s` from the 202: a busy client whose requests (~16 per
    attribution at 25 ms) share the stack's cores with the import."""

    def __init__(self, url: str, key: str, photos: list[bytes], interval_s: float = 1.0, poll_s: float = 0.0):
        super().__init__(daemon=True)
        self.url, self.headers, self.photos, self.interval_s = url, {"Authorization": f"Bearer {key}"}, photos, interval_s
        self.poll_s = poll_s
        self.samples: list[dict] = []
        self._halt, self._threads = threading.Event(), []
        self.started = time.monotonic()

    def run(self) -> None:
        i = 0
        while not self._halt.wait(max(0.0, self.started + i * self.interval_s - time.monotonic())):
            thread = threading.Thread(target=self._one, args=(self.photos[i % len(self.photos)],), daemon=True)
            thread.start()
            self._threads.append(thread)
            i += 1

    def _one(self, photo: bytes) -> None:
        t0 = time.monotonic()
        params = {} if self.poll_s > 0 else {"wait": 30}
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=120) as client:
            body = client.post("/attribute", params=params, files={"image": ("q.jpg", photo, "image/jpeg")}).json()
            while body["status"] not in ("done", "failed"):
                if time.monotonic() - t0 > 120:
                    return
                time.sleep(self.poll_s or 0.025)
                body = client.get(f"/attribute/{body['id']}").json()
        self.samples.append({"at_s": t0 - self.started, "client_ms": (time.monotonic() - t0) * 1000,
                             "server_ms": _server_ms(body), "status": body["status"]})

    def stop(self) -> list[dict]:
        self._halt.set()
        self.join()
        for thread in self._threads:
            thread.join(timeout=130)
        return sorted(self.samples, key=lambda s: s["at_s"])


def wait_overhead(url: str, key: str, photos: list[bytes], n: int = 40) -> list[dict]:
    """Sequential `POST /attribute?wait=10` on an idle stack: the client's submit-to-answer time beside
    the server's created_at -> finished_at (the worker's time plus its queue pickup). Their difference
    is upload + admission (decode check, row, enqueue) + the event round trip + the response; the same
    request without `wait` (answered 202 once enqueued), interleaved, measures the part before
    created_at, so what `?wait` itself adds is the rest (issue 8: <= 10 ms at p50)."""
    samples = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for i in range(n):
            photo = ("q.jpg", photos[i % len(photos)], "image/jpeg")
            t0 = time.monotonic()
            job = client.post("/attribute", files={"image": photo}).json()
            enqueue_ms = (time.monotonic() - t0) * 1000
            while client.get(f"/attribute/{job['id']}").json()["status"] not in ("done", "failed"):
                time.sleep(0.05)  # idle again before the timed ?wait request
            t0 = time.monotonic()
            body = client.post("/attribute?wait=10", files={"image": photo}).json()
            client_ms = (time.monotonic() - t0) * 1000
            if body.get("status") == "done":
                samples.append({"client_ms": client_ms, "server_ms": _server_ms(body), "enqueue_ms": enqueue_ms})
    return samples


def _server_ms(body: dict) -> float | None:
    from datetime import datetime
    if not body.get("finished_at"):
        return None
    return (datetime.fromisoformat(body["finished_at"]) - datetime.fromisoformat(body["created_at"])).total_seconds() * 1000


def bulk_upload(url: str, key: str, paths: list[Path], per_item: int, per_request: int, uploaders: int,
                batch: str = "") -> dict:
    """Send every image through POST /sources/bulk, `per_item` images per work, `per_request` items per
    request, from `uploaders` threads; returns the summed report and each request's time. `batch` keeps
    item ids apart between calls (an item id seen before is reported as a duplicate)."""
    items = [paths[i:i + per_item] for i in range(0, len(paths), per_item)]
    requests = [items[i:i + per_request] for i in range(0, len(items), per_request)]
    results, lock, todo = [], threading.Lock(), list(enumerate(requests))

    def work():
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    index, request = todo.pop(0)
                t0 = time.monotonic()
                response = _post_bulk(client, f"{batch}{index}", request)
                with lock:
                    results.append({"seconds": time.monotonic() - t0, "status": response.status_code,
                                    "summary": response.json().get("summary")})
    threads = [threading.Thread(target=work) for _ in range(uploaders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = {k: sum((r["summary"] or {}).get(k, 0) for r in results) for k in ("created", "duplicate", "refused")}
    return {"requests": len(results), "statuses": sorted({r["status"] for r in results}), "summary": summary,
            "request_seconds": [round(r["seconds"], 3) for r in results]}


def _post_bulk(client: httpx.Client, index: str, request: list[list[Path]]) -> httpx.Response:
    manifest = {"items": [{"item_id": f"bench-{index}-{j}", "title": f"bench work {index}-{j}",
                           "rights_holder": "bench", "files": [p.name for p in item]}
                          for j, item in enumerate(request)]}
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for item in request for p in item]
    return client.post("/sources/bulk", data={"manifest": json.dumps(manifest)}, files=files)


async def _attribute_once(session, url: str, photo: bytes, headers: dict) -> int:
    """POST /attribute once; `headers` may carry an X-Request-ID, which the API's access log repeats."""
    import aiohttp
    form = aiohttp.FormData()
    form.add_field("image", photo, filename="q.jpg", content_type="image/jpeg")
    async with session.post(f"{url}/attribute", data=form, headers=headers) as response:
        await response.read()
        return response.status


async def _closed_loop(url: str, key: str, photo: bytes, connections: int, seconds: float) -> dict:
    import aiohttp
    headers, done, errors = {"Authorization": f"Bearer {key}"}, [], 0
    deadline = time.monotonic() + seconds

    async def client(session):
        nonlocal errors
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            status = await _attribute_once(session, url, photo, headers)
            done.append(time.monotonic() - t0)
            errors += status != 202
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        t0 = time.monotonic()
        await asyncio.gather(*(client(session) for _ in range(connections)))
        elapsed = time.monotonic() - t0
    return {"requests": len(done), "seconds": elapsed, "rate_per_s": len(done) / elapsed, "errors": errors,
            **_percentiles([d * 1000 for d in done])}


async def _open_loop(url: str, key: str, photo: bytes, connections: int, rate: float, seconds: float) -> dict:
    """Requests scheduled at a fixed rate; latency counts from the scheduled time (no coordinated omission).
    Also how late this client itself started each request (`client_lag`: its event loop shares the cores
    with the API), and the latency from that start (`from_send`), so a tail can be told apart from the
    client's own delays. Each request's X-Request-ID starts with the returned `request_id_prefix`, so the
    API's access log can give the server's own duration of the same requests (`server_durations`)."""
    import aiohttp
    headers, latencies, lags, sent, errors = {"Authorization": f"Bearer {key}"}, [], [], [], 0
    prefix = f"open-{uuid.uuid4().hex[:8]}-"

    async def one(session, scheduled: float, i: int):
        nonlocal errors
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        started = time.monotonic()
        status = await _attribute_once(session, url, photo, {**headers, "X-Request-ID": f"{prefix}{i}"})
        ended = time.monotonic()
        latencies.append((ended - scheduled) * 1000)
        lags.append((started - scheduled) * 1000)
        sent.append((ended - started) * 1000)
        errors += status != 202
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        start = time.monotonic() + 0.2
        await asyncio.gather(*(one(session, start + i / rate, i) for i in range(int(rate * seconds))))
    return {"offered_per_s": rate, "requests": len(latencies), "errors": errors, **_percentiles(latencies),
            "client_lag": _percentiles(lags), "from_send": _percentiles(sent), "request_id_prefix": prefix}


def server_durations(log_path, prefix: str) -> dict:
    """p50/p95/p99 of the API's own `duration_ms` (access log, outermost middleware: from the app's first
    sight of the request to its response) for the requests whose id starts with `prefix`."""
    pattern = re.compile(rf"request_id={re.escape(prefix)}\d+\b.*?duration_ms=([0-9.]+)")
    with open(log_path, errors="replace") as log:
        values = [float(m.group(1)) for line in log if (m := pattern.search(line))]
    return {"requests": len(values), **_percentiles(values)}


def enqueue_saturation(url: str, key: str, photo: bytes, connections: int, seconds: float) -> dict:
    closed = asyncio.run(_closed_loop(url, key, photo, connections, seconds))
    opened = asyncio.run(_open_loop(url, key, photo, connections, closed["rate_per_s"] / 2, seconds))
    return {"closed_loop": closed, "open_loop_half_rate": opened}


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5), 1), "p95_ms": round(pick(0.95), 1), "p99_ms": round(pick(0.99), 1)}


def encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()

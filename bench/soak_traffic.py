"""Soak traffic: client threads sending a weighted mix of requests, a ledger of every answer, and the
final check that every submitted job ended done."""
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx

from bench.soak_stack import EXPECTED, LIVE_WORKS_PER_CLIENT, MIX, PHOTOS


@dataclass
class Ledger:
    """Everything the clients did, shared by the threads (one lock guards it all)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    errors: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    job_ids: set[str] = field(default_factory=set)
    work_ids: set[str] = field(default_factory=set)
    deleted_work_ids: set[str] = field(default_factory=set)
    dedupe_mismatches: int = 0

    def record(self, op: str, status: int | str, seconds: float, detail: str = "") -> None:
        with self.lock:
            self.latencies[op].append(seconds)
            self.statuses[op][str(status)] += 1
            if status == "transport" or (isinstance(status, int) and status >= 500):
                self.errors.append(f"{op} -> {status} {detail}"[:300])
            elif status not in EXPECTED.get(op, {200}):
                self.unexpected.append(f"{op} -> {status} {detail}"[:300])


def timed(ledger: Ledger, op: str, send) -> httpx.Response | None:
    """Send one request, record its status and latency; a transport error is recorded and returns None."""
    start = time.perf_counter()
    try:
        response = send()
    except httpx.TransportError as exc:
        ledger.record(op, "transport", time.perf_counter() - start, repr(exc))
        return None
    ledger.record(op, response.status_code, time.perf_counter() - start, response.text[:200])
    return response


# ---------------------------------------------------------------- traffic

def load_photos() -> list[tuple[str, bytes]]:
    return [(f"{d.name}/{p.name}", p.read_bytes()) for d in sorted(PHOTOS.iterdir()) if d.is_dir()
            for p in sorted(d.glob("*.jpg"))]


class Client:
    """One traffic thread: its own works (so re-registration and deletes never race another client)."""

    def __init__(self, index: int, url: str, keys: dict[str, str], photos, ledger: Ledger, seed: int):
        self.index, self.photos, self.ledger = index, photos, ledger
        self.rng = random.Random(seed)
        self.registrar = _client(url, keys["registrar"])
        self.attributor = _client(url, keys["attributor"])
        self.admin = _client(url, keys["admin"])
        self.works: dict[str, list[tuple[str, bytes]]] = {}  # live work id -> the exact files sent
        self.jobs: list[str] = []

    def run(self, deadline: float, max_requests: int) -> None:
        ops, weights = zip(*MIX.items())
        try:
            while time.monotonic() < deadline and self._requests() < max_requests:
                getattr(self, self.rng.choices(ops, weights)[0])()
                if self.rng.random() < 0.01:
                    timed(self.ledger, "metrics", lambda: self.admin.get("/metrics"))
        finally:
            for client in (self.registrar, self.attributor, self.admin):
                client.close()

    def _requests(self) -> int:
        with self.ledger.lock:
            return sum(sum(c.values()) for c in self.ledger.statuses.values())

    def attribute_wait(self) -> None:
        self._attribute("attribute_wait", wait=10)

    def attribute_async(self) -> None:
        job_id = self._attribute("attribute_async", wait=0)
        deadline = time.monotonic() + 60
        while job_id and time.monotonic() < deadline:
            response = timed(self.ledger, "attribute_poll", lambda: self.attributor.get(f"/attribute/{job_id}"))
            if response is None or response.status_code != 200 or response.json()["status"] in ("done", "failed"):
                return
            time.sleep(0.2)

    def _attribute(self, op: str, wait: float) -> str | None:
        name, data = self.rng.choice(self.photos)
        response = timed(self.ledger, op, lambda: self.attributor.post(
            "/attribute", params={"wait": wait, "top_k": 5}, files={"image": (name, data, "image/jpeg")}))
        if response is None or response.status_code not in (200, 202):
            return None
        job_id = response.json()["id"]
        self.jobs.append(job_id)
        with self.ledger.lock:
            self.ledger.job_ids.add(job_id)
        return job_id

    def register(self) -> None:
        if len(self.works) >= LIVE_WORKS_PER_CLIENT:
            return self.delete()
        subject = self.rng.choice(sorted({name.split("/")[0] for name, _ in self.photos}))
        own = [(n, d) for n, d in self.photos if n.startswith(subject + "/")]
        # A nonce after the JPEG's end marker makes the bytes (and so the hash) unique; decoders ignore it.
        nonce = f"soak-{uuid.uuid4().hex}".encode()
        files = [(n, d + nonce) for n, d in self.rng.sample(own, k=min(len(own), self.rng.randint(1, 3)))]
        response = self._post_work("register", subject, files)
        if response is not None and response.status_code == 201:
            work_id = response.json()["id"]
            self.works[work_id] = files
            with self.ledger.lock:
                self.ledger.work_ids.add(work_id)

    def register_dup(self) -> None:
        """Identical bytes again: the API must answer 200 with the work it already holds."""
        if not self.works:
            return self.register()
        work_id = self.rng.choice(list(self.works))
        response = self._post_work("register_dup", "again", self.works[work_id])
        if response is not None and response.status_code == 200 and response.json()["id"] != work_id:
            with self.ledger.lock:
                self.ledger.dedupe_mismatches += 1

    def _post_work(self, op: str, title: str, files) -> httpx.Response | None:
        parts = [("images", (name.replace("/", "-"), data, "image/jpeg")) for name, data in files]
        return timed(self.ledger, op, lambda: self.registrar.post("/sources", files=parts, data={"title": title}))

    def delete(self) -> None:
        if not self.works:
            return self.list()
        work_id = self.rng.choice(list(self.works))
        response = timed(self.ledger, "delete", lambda: self.registrar.delete(f"/sources/{work_id}"))
        if response is not None and response.status_code == 204:
            del self.works[work_id]
            with self.ledger.lock:
                self.ledger.deleted_work_ids.add(work_id)

    def list(self) -> None:
        timed(self.ledger, "list", lambda: self.registrar.get("/sources", params={"limit": 20}))

    def read_work(self) -> None:
        if not self.works:
            return self.list()
        work_id = self.rng.choice(list(self.works))
        timed(self.ledger, "read_work", lambda: self.registrar.get(f"/sources/{work_id}"))

    def read_job(self) -> None:
        if not self.jobs:
            return self.attribute_wait()
        job_id = self.rng.choice(self.jobs)
        timed(self.ledger, "read_job", lambda: self.attributor.get(f"/attribute/{job_id}"))


def _client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"})


def run_clients(url: str, keys: dict[str, str], clients: int, seconds: float, ledger: Ledger,
                max_requests: int = 1_000_000, seed: int = 0) -> None:
    photos = load_photos()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=Client(i, url, keys, photos, ledger, seed + i).run,
                                args=(deadline, max_requests), name=f"soak-client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# ---------------------------------------------------------------- the end: drain and verify

def verify_jobs(url: str, admin_key: str, ledger: Ledger, timeout: float = 180) -> dict:
    """Wait for every submitted job to finish, then read each back: attribution jobs must be `done`,
    every live work `searchable` (its embed job done). Anything still unfinished at the end is lost."""
    jobs = {("attribution", j) for j in ledger.job_ids}
    works = {("embed", w) for w in ledger.work_ids - ledger.deleted_work_ids}
    pending, final = jobs | works, {}
    deadline = time.monotonic() + timeout
    with _client(url, admin_key) as admin:
        while pending and time.monotonic() < deadline:
            for kind, job_id in sorted(pending):
                final[(kind, job_id)] = _job_state(admin, kind, job_id)
            pending = {k for k in pending if final[k] not in ("done", "failed")}
            if pending:
                time.sleep(1)
    states = Counter(final.values())
    return {"attribution_submitted": len(jobs), "embed_submitted": len(works),
            "deleted_works": len(ledger.deleted_work_ids), "states": dict(states),
            "done": states["done"], "failed": states["failed"],
            "lost": len(jobs | works) - states["done"] - states["failed"],
            "lost_ids": sorted(f"{kind}:{job_id}" for kind, job_id in pending)[:20],
            "dedupe_mismatches": ledger.dedupe_mismatches}


def _job_state(admin: httpx.Client, kind: str, job_id: str) -> str:
    path = f"/attribute/{job_id}" if kind == "attribution" else f"/sources/{job_id}"
    try:
        response = admin.get(path)
    except httpx.TransportError:
        return "unreachable"
    if response.status_code != 200:
        return f"http-{response.status_code}"
    body = response.json()
    if kind == "attribution":
        return body["status"]
    if any(image["state"] == "failed" for image in body["images"]):
        return "failed"
    return "done" if body["searchable"] else "pending"

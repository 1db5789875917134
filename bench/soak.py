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
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx

from common.db.schema import reset_schema

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "demo" / "data" / "dreambooth"
POSTGRES_URL = os.environ.get("ATTRIB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ATTRIB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RIGHTS_HOLDER = "Soak rights holder"
# Operation -> weight; every client draws from this mix.
MIX = {"attribute_wait": 40, "attribute_async": 10, "register": 14, "register_dup": 6, "delete": 4,
       "list": 10, "read_work": 8, "read_job": 8}
# Status codes each operation may answer without being "unexpected" (errors are 5xx/transport only).
EXPECTED = {"attribute_wait": {200, 202}, "attribute_async": {202, 200}, "attribute_poll": {200},
            "register": {201}, "register_dup": {200}, "delete": {204}, "list": {200}, "read_work": {200},
            "read_job": {200}, "metrics": {200}}
LIVE_WORKS_PER_CLIENT = 8  # keeps the index (and so the worker's memory) bounded
RSS_INTERVAL_S = 2.0


# ---------------------------------------------------------------- the stack under test

def create_keys(url: str) -> dict[str, str]:
    """One key per role the traffic plays: registrar, attributor, admin (for /metrics and checks)."""
    from sqlalchemy.orm import Session
    from common.apikeys import create_key
    from common.db.models import Scope
    from common.db.session import make_engine
    engine = make_engine(url)
    with Session(engine) as session:
        keys = {"registrar": create_key(session, name="soak registrar", scope=Scope.registrar,
                                        rights_holder=RIGHTS_HOLDER)[1],
                "attributor": create_key(session, name="soak attributor", scope=Scope.attributor)[1],
                "admin": create_key(session, name="soak admin", scope=Scope.admin)[1]}
        session.commit()
    engine.dispose()
    return keys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_env(database: str, workdir: Path) -> dict[str, str]:
    url = POSTGRES_URL if database == "postgresql" else f"sqlite:///{workdir / 'attrib.db'}"
    return {"ATTRIB_DATABASE_URL": url, "ATTRIB_REDIS_URL": REDIS_URL, "ATTRIB_DATA_DIR": str(workdir / "data"),
            "ATTRIB_QUEUE_NAME": f"soak-{uuid.uuid4().hex[:8]}", "ATTRIB_TORCH_THREADS": "1",
            # The soak measures the service, not the limiter: lift the per-key limit out of the way.
            "ATTRIB_RATE_LIMIT_REQUESTS": "100000000"}


class Stack:
    """A real uvicorn API and one real worker, as subprocesses on a free 127.0.0.1 port."""

    def __init__(self, env: dict[str, str], workdir: Path):
        self.env, self.workdir = env, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, timeout: float = 180) -> "Stack":
        self._spawn("api", [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                            "--port", str(self.port), "--log-level", "warning"])
        self._spawn("worker", [sys.executable, "-m", "worker", "--name", f"soak-{os.getpid()}"])
        self._wait_ready(timeout)
        return self

    def _spawn(self, role: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{role}.log", "ab")
        self.processes[role] = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=log,
                                                env={**os.environ, **self.env, "PYTHONPATH": str(REPO)})

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for role, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{role} exited early:\n{self.log_tail(role)}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"stack not ready after {timeout:.0f}s:\n{self.log_tail('api')}\n{self.log_tail('worker')}")

    def log_tail(self, role: str, chars: int = 3000) -> str:
        path = self.workdir / f"{role}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def pids(self) -> dict[str, int]:
        return {role: process.pid for role, process in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---------------------------------------------------------------- measurements

def read_rss_mb(pid: int) -> float | None:
    """VmRSS of a live process in MB, from /proc (None once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class RssSampler(threading.Thread):
    """Samples the RSS of named processes every `interval` seconds until stopped."""

    def __init__(self, pids: dict[str, int], interval: float = RSS_INTERVAL_S):
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.samples: dict[str, list[tuple[float, float]]] = {role: [] for role in pids}
        self.started = time.monotonic()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> None:
        elapsed = time.monotonic() - self.started
        for role, pid in self.pids.items():
            rss = read_rss_mb(pid)
            if rss is not None:
                self.samples[role].append((elapsed, rss))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


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
        print(f"report written to {args.out}")
    jobs = report["jobs"]
    return 0 if report["errors"] == 0 and jobs["lost"] == 0 and jobs["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

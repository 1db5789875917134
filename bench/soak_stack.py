"""The stack a soak run drives: its own migrated database, keys, uvicorn API and worker processes,
and the sampling of their memory (RSS)."""
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

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

    def _wait_ready(self, timeout: float, probe: str = "/readyz") -> None:
        """Until `probe` answers 200 (/readyz: API, database, Redis and a worker; /healthz: the API alone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for role, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{role} exited early:\n{self.log_tail(role)}")
            try:
                if httpx.get(f"{self.url}{probe}", timeout=2).status_code == 200:
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

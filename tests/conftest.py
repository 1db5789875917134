"""Fixtures against the real services: PostgreSQL and Redis on 127.0.0.1, SQLite in a temp dir.
Every test gets its own database state, data directory and RQ queue name."""
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from redis import Redis

REPO = Path(__file__).resolve().parents[1]
DREAMBOOTH = REPO / "demo" / "data" / "dreambooth"
POSTGRES_URL = os.environ.get("ATTRIB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ATTRIB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def clear_cached_config() -> None:
    """Settings, engine and Redis clients are cached per process; tests switch them."""
    from app.api import deps
    from app.keycache import KEY_CACHE
    from common.db import session
    from common.settings import get_settings
    for cached in (get_settings, session.get_engine, session.get_sessionmaker, deps.redis_for_url):
        cached.cache_clear()
    KEY_CACHE.clear()


def reset_database(url: str) -> None:
    """Each test starts from the real schema, migrated from empty. A SQLite file is a copy of one
    migrated once per session (`_sqlite_template`): migrating took about 0.2 s, for a few hundred tests."""
    from common.db.schema import reset_schema
    if url.startswith("sqlite:///"):
        target = Path(url[len("sqlite:///"):])
        for stale in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):  # a WAL left beside it would replay
            stale.unlink(missing_ok=True)
        shutil.copyfile(_sqlite_template(), target)
        return
    reset_schema(url)


@functools.cache
def _sqlite_template() -> Path:
    import atexit
    import sqlite3

    from common.db.schema import reset_schema
    folder = Path(tempfile.mkdtemp(prefix="attrib-schema-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    reset_schema(f"sqlite:///{folder / 'template.db'}")
    with contextlib.closing(sqlite3.connect(folder / "template.db")) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")  # all in the one file the copies take (WAL is set on connect)
    return folder / "template.db"


def url_for(kind: str, tmp_path: Path) -> str:
    return POSTGRES_URL if kind == "postgresql" else f"sqlite:///{tmp_path / 'attrib.db'}"


@pytest.fixture
def service_env(request, tmp_path, monkeypatch):
    """Environment of one isolated deployment; `request.param` picks the database (default SQLite)."""
    kind = getattr(request, "param", "sqlite")
    env = {"ATTRIB_DATABASE_URL": url_for(kind, tmp_path), "ATTRIB_REDIS_URL": REDIS_URL,
           "ATTRIB_DATA_DIR": str(tmp_path / "data"), "ATTRIB_QUEUE_NAME": f"test-{uuid.uuid4().hex[:8]}",
           "ATTRIB_TORCH_THREADS": "1",
           # gc.freeze() is for a whole process's life: in pytest's one process every app started would keep
           # what was alive then forever. tests/common/test_gc_tuning.py checks it in processes of their own.
           "ATTRIB_GC_FREEZE": "false",
           # Every TestClient request comes from the address "testclient": a per-address limit shared by
           # all tests in one window would make them flaky. tests/app/test_gate.py sets its own.
           "ATTRIB_ANONYMOUS_RATE_LIMIT_REQUESTS": "1000000"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    clear_cached_config()
    reset_database(env["ATTRIB_DATABASE_URL"])
    yield env
    clear_cached_config()


@pytest.fixture
def vector_backend(request, service_env, monkeypatch):
    """The vector engine of the deployment (workers started afterwards, and this process's publish calls);
    `request.param` picks it, default FAISS. "milvus" is milvus-lite with ATTRIB_MILVUS_URI empty: each
    worker process takes its own `DATA_DIR/milvus/worker-N.db` (one process per lite file), and the test
    process opens none of them. Parametrise with `indirect=True` beside `service_env`."""
    from common.settings import get_settings
    backend = getattr(request, "param", "faiss")
    service_env["ATTRIB_VECTOR_BACKEND"] = backend
    monkeypatch.setenv("ATTRIB_VECTOR_BACKEND", backend)
    get_settings.cache_clear()
    return backend


@pytest.fixture
def make_key(service_env):
    """Create an API key in the test database; returns its secret."""
    from common.apikeys import create_key
    from common.db.models import Scope
    from common.db.session import new_session

    def make(scope: str = "admin", rights_holder: str | None = None, name: str = "test") -> str:
        with new_session() as session:
            _, secret = create_key(session, name=name, scope=Scope(scope), rights_holder=rights_holder)
            session.commit()
        return secret
    return make


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def anonymous_client(service_env):
    from fastapi.testclient import TestClient
    from app.main import create_app
    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def client(anonymous_client, make_key):
    """A client holding an admin key."""
    anonymous_client.headers.update(auth(make_key("admin")))
    return anonymous_client


@pytest.fixture
def redis_client():
    client = Redis.from_url(REDIS_URL)
    yield client
    client.close()


class WorkerProcess:
    """A real `python -m worker` process on the test's environment."""

    def __init__(self, env: dict, name: str, log_path: Path, queues: str | None = None):
        self.env, self.name, self.log_path = env, name, log_path
        self.queues = ["--queues", queues] if queues else []
        self.process: subprocess.Popen | None = None
        self._asked = False

    def start(self, timeout: float = 90) -> "WorkerProcess":
        self._asked = False
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker", "--name", self.name, *self.queues], cwd=REPO, stdout=log, stderr=log,
            env={**os.environ, **self.env, "PYTHONPATH": str(REPO)})
        self._wait_for_heartbeat(timeout)
        return self

    def _wait_for_heartbeat(self, timeout: float) -> None:
        from common.jobs import heartbeat_key
        redis = Redis.from_url(self.env["ATTRIB_REDIS_URL"])
        deadline = time.monotonic() + timeout
        while not redis.exists(heartbeat_key(self.env["ATTRIB_QUEUE_NAME"], self.name)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.terminate()
        self.wait_stopped()

    def terminate(self) -> None:
        """Ask once (RQ treats a second SIGTERM as a forced stop)."""
        if self.process and self.process.poll() is None and not self._asked:
            self._asked = True
            self.process.terminate()

    def wait_stopped(self) -> None:
        if self.process and self.process.poll() is None:
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(service_env, tmp_path):
    started: list[WorkerProcess] = []

    def start(name: str | None = None, queues: str | None = None) -> WorkerProcess:
        """`queues`: the worker's --queues (default: both, attribution first)."""
        worker = WorkerProcess(service_env, name or f"w-{uuid.uuid4().hex[:6]}", tmp_path / "worker.log", queues)
        started.append(worker)  # before start: a worker that starts too slowly is still stopped afterwards
        return worker.start()

    yield start
    for worker in started:  # all at once: each takes a moment to finish its job and exit
        worker.terminate()
    for worker in started:
        worker.wait_stopped()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One standalone S3-compatible server (moto_server) for the session, stopped at the end; tests take
    their own bucket with `s3_server.new_bucket()`. Credentials are moto's dummies, set for this process."""
    from tests.s3server import CREDENTIALS, start_s3_server
    saved = {key: os.environ.get(key) for key in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = start_s3_server(tmp_path_factory.mktemp("s3") / "moto.log")
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

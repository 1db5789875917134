"""Fault-test helpers: workers that can be SIGKILLed mid-job, with short heartbeat and recovery timings."""
import time
import uuid

import pytest

from tests.conftest import WorkerProcess, clear_cached_config
from tests.factories import photo_bytes

# Short enough to keep each test fast; recovery of a killed worker's job waits for its heartbeat to expire.
FAST_RECOVERY = {"ATTRIB_WORKER_HEARTBEAT_TTL_S": "3", "ATTRIB_RECOVERY_GRACE_S": "1"}


@pytest.fixture
def fault_env(service_env, monkeypatch):
    for key, value in FAST_RECOVERY.items():
        monkeypatch.setenv(key, value)
        service_env[key] = value
    clear_cached_config()
    return service_env


@pytest.fixture
def spawn_worker(fault_env, tmp_path):
    """spawn_worker(**env) starts a worker with extra environment; every one is killed at teardown."""
    started: list[WorkerProcess] = []

    def spawn(**extra_env: str) -> WorkerProcess:
        worker = WorkerProcess({**fault_env, **extra_env}, f"w-{uuid.uuid4().hex[:6]}", tmp_path / "worker.log")
        started.append(worker)
        return worker.start()

    try:
        yield spawn
    finally:
        for worker in started:
            worker.kill()


def register(client, subject: str, indices=(0, 1)) -> str:
    files = [("images", (f"{subject}-{i}.jpg", photo_bytes(subject, i), "image/jpeg")) for i in indices]
    response = client.post("/sources", files=files, data={"title": subject, "rights_holder": "studio"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")

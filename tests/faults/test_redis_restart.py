"""Redis restarts with jobs queued and nothing persisted: the API says so (503), and once Redis is back
a worker re-derives every lost job from the database and completes it."""
import socket
import subprocess
import time

import pytest
from redis import Redis

from tests.conftest import clear_cached_config
from tests.factories import photo_bytes
from tests.faults.conftest import register, wait_for


class PrivateRedis:
    """A throwaway redis-server owned by the test (never the shared one on 6379)."""

    def __init__(self, port: int):
        self.port, self.url = port, f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self._answers(), 10, "redis-server to start")

    def _answers(self) -> bool:
        try:
            return Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
        except Exception:
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_redis(fault_env, monkeypatch):
    redis = PrivateRedis(free_port())
    redis.start()
    monkeypatch.setenv("ATTRIB_REDIS_URL", redis.url)
    fault_env["ATTRIB_REDIS_URL"] = redis.url
    clear_cached_config()
    try:
        yield redis
    finally:
        redis.kill()


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]


def test_queued_jobs_survive_a_redis_restart(private_redis, client, spawn_worker):
    works = [register(client, subject) for subject in ("dog", "teapot")]
    queued = client.post("/attribute", files={"image": ("q.jpg", photo_bytes("dog", 0), "image/jpeg")})
    assert queued.status_code == 202
    job_url = queued.json()["status_url"]

    private_redis.kill()  # the queue is gone: nothing was persisted
    not_ready = client.get("/readyz")
    assert_unavailable(not_ready)
    assert not_ready.json()["checks"]["redis"].startswith("unavailable")
    assert_unavailable(client.post("/attribute", files={"image": ("q.jpg", photo_bytes("cat", 0), "image/jpeg")}))
    assert_unavailable(client.post("/sources", data={"title": "cat", "rights_holder": "studio"},
                                   files=[("images", ("cat.jpg", photo_bytes("cat", 0), "image/jpeg"))]))

    private_redis.start()
    assert Redis.from_url(private_redis.url).dbsize() == 0
    time.sleep(1)  # older than the recovery grace
    spawn_worker()
    for work_id in works:
        wait_for(lambda: client.get(f"/sources/{work_id}").json()["searchable"], 30, "the works to embed")
    body = wait_for(lambda: (b := client.get(job_url).json())["status"] == "done" and b, 30,
                    "the lost attribution job to be re-enqueued and done")
    assert body["matches"][0]["work_id"] == works[0]
    assert client.get("/readyz").status_code == 200
    assert client.get("/sources", params={"with_count": True}).json()["count"] == 2  # the refused registration left nothing behind

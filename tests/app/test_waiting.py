"""Issue 7 (#2): `?wait` holds no thread. More clients wait than the API has threads, and /healthz
and another client's requests still get answers; the waits end on the job-finished event (no
worker here: the test finishes the rows itself and publishes, as the worker does)."""
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import select

from common.db.models import AttributionJob, JobStatus
from common.db.session import new_session
from common.events import publish_job_finished
from common.settings import get_settings
from tests.conftest import auth
from tests.factories import photo_bytes

THREADS, WAITERS = 4, 8


@pytest.fixture
def small_api(service_env, monkeypatch):
    monkeypatch.setenv("ATTRIB_API_THREADS", str(THREADS))
    get_settings.cache_clear()
    from app.main import create_app
    app = create_app()
    with TestClient(app) as client:
        yield app, client


def submit(client, secret, wait=0):
    return client.post(f"/attribute?wait={wait}", headers=auth(secret),
                       files={"image": ("q.jpg", photo_bytes("dog", 1), "image/jpeg")})


def queued_job_ids() -> list[uuid.UUID]:
    with new_session() as session:
        return list(session.scalars(select(AttributionJob.id).where(AttributionJob.status == JobStatus.queued)))


def finish(job_ids) -> None:
    with new_session() as session:
        for job in session.scalars(select(AttributionJob).where(AttributionJob.id.in_(job_ids))):
            job.status, job.finished_at, job.unattributed = JobStatus.done, datetime.now(timezone.utc), 1.0
        session.commit()
    redis = Redis.from_url(get_settings().redis_url)
    for job_id in job_ids:
        publish_job_finished(redis, job_id, JobStatus.done)


def test_more_waits_than_threads_leave_health_and_other_clients_answered(small_api, make_key):
    app, client = small_api
    waiter, other = make_key("attributor", name="waiter"), make_key("attributor", name="other")
    with ThreadPoolExecutor(WAITERS) as pool:
        waiting = [pool.submit(submit, client, waiter, 30) for _ in range(WAITERS)]
        deadline = time.monotonic() + 120  # only against a hang; nothing here is a latency assertion
        while app.state.job_events.waiting < WAITERS:
            assert time.monotonic() < deadline, "the waits never all started"
            assert not any(f.done() for f in waiting), [f.result().text for f in waiting if f.done()]
            time.sleep(0.05)
        assert client.get("/healthz").json() == {"status": "ok"}
        second = submit(client, other)
        assert second.status_code == 202
        assert client.get(second.json()["status_url"], headers=auth(other)).json()["status"] == "queued"
        finish(queued_job_ids())
        answers = [f.result() for f in waiting]
    assert [a.status_code for a in answers] == [200] * WAITERS
    assert {a.json()["status"] for a in answers} == {"done"}


def test_get_with_wait_uses_the_same_waiter(small_api, make_key):
    app, client = small_api
    secret = make_key("attributor")
    job = submit(client, secret).json()
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(client.get, f"{job['status_url']}?wait=30", headers=auth(secret))
        deadline = time.monotonic() + 60
        while app.state.job_events.waiting < 1:
            assert time.monotonic() < deadline and not reading.done()
            time.sleep(0.05)
        finish([uuid.UUID(job["id"])])
        assert reading.result().json()["status"] == "done"


def test_over_the_wait_cap_the_answer_comes_at_once(service_env, monkeypatch, make_key):
    monkeypatch.setenv("ATTRIB_MAX_CONCURRENT_WAITS_PER_KEY", "0")
    get_settings.cache_clear()
    from app.main import create_app
    with TestClient(create_app()) as client:
        response = submit(client, make_key("attributor"), wait=30)
    assert response.status_code == 202 and response.json()["status"] == "queued"


STOP_RIGHT_AFTER_START = """
from fastapi.testclient import TestClient
from app.main import create_app
for _ in range(3):
    with TestClient(create_app()):
        pass  # shutdown while the job-events listener connects and subscribes
print("stopped")
"""


def test_an_api_process_stopped_right_after_it_started_shuts_down(service_env):
    """A cancel that lands while redis-py subscribes was lost, and the lifespan's shutdown waited for the
    listener forever (every try of this script hung before JobEvents.stop cancelled again)."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO
    done = subprocess.run([sys.executable, "-c", STOP_RIGHT_AFTER_START], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "stopped", done.stderr[-2000:]

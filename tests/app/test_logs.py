"""JSON logs: an API request's lines carry its request id, the caller's key id and the job it made; a
worker's job lines carry the job's ids (ATTRIB_LOG_FORMAT=json)."""
import io
import json
import logging

import pytest
from rq import Queue

from common.logging_config import configure_logging
from tests.conftest import auth
from tests.factories import photo_bytes


@pytest.fixture
def json_lines():
    """Route this process's log handler to a buffer; returns a reader of the JSON lines so far."""
    configure_logging(service="test", log_format="json")
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "attrib")
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logging.getLogger().removeHandler(handler)


def test_request_lines_carry_request_key_and_job_ids(anonymous_client, make_key, json_lines, monkeypatch):
    from common.apikeys import authenticate
    from common.db.session import new_session
    secret = make_key("attributor")
    with new_session() as session:
        key_id = str(authenticate(session, secret=secret).id)
    response = anonymous_client.post("/v1/attribute", headers={**auth(secret), "X-Request-ID": "req-42"},
                                     files={"image": ("q.jpg", photo_bytes("dog", 0), "image/jpeg")})
    assert response.status_code == 202 and response.headers["x-request-id"] == "req-42"
    access = [line for line in json_lines() if line["logger"] == "attrib.access"]
    assert access[-1] | {"ts": None} == access[-1] | {
        "ts": None, "request_id": "req-42", "key_id": key_id, "job_id": response.json()["id"], "status": 202,
        "method": "POST", "path": "/v1/attribute", "level": "INFO"}
    # A hostile request id (log injection) is replaced by a fresh one.
    forged = anonymous_client.get("/healthz", headers={"X-Request-ID": "x\n{\"level\":\"ERROR\"}"})
    assert forged.headers["x-request-id"] != "x" and len(forged.headers["x-request-id"]) == 32


def test_worker_job_lines_carry_the_jobs_ids(service_env, redis_client, json_lines):
    from worker.logged_worker import LoggedWorker, job_ids
    queue = Queue(service_env["ATTRIB_QUEUE_NAME"], connection=redis_client)
    job = queue.enqueue("logging.warning", "inside the job")
    LoggedWorker([queue], connection=redis_client, name="log-test").work(burst=True, with_scheduler=False)
    inside = next(line for line in json_lines() if line["msg"] == "inside the job")
    assert (inside["rq_job"], inside["worker"], inside["service"]) == (job.id, "log-test", "test")
    attribution = queue.enqueue("worker.jobs.attribute_image", "0b7e4c1a-9d3f-4b52-8e61-2a4f9c3d7e80")
    assert job_ids(attribution)["job_id"] == "0b7e4c1a-9d3f-4b52-8e61-2a4f9c3d7e80"
    attribution.delete()

"""A real worker finishes a job with a callback: the outbox row commits with the result, the worker's
delivery thread sends it signed to a real receiver on loopback, and the job shows the delivery."""
import json
import time

import pytest

from common.webhooks import verify_signature
from tests.app.test_end_to_end import register, wait_searchable
from tests.conftest import clear_cached_config
from tests.factories import photo_bytes
from tests.webhook_receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_worker_delivers_the_signed_result(client, service_env, monkeypatch, start_worker, receiver):
    for key, value in {"ATTRIB_SECRET_KEY": "e2e-" + "z" * 40, "ATTRIB_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
                       "ATTRIB_WEBHOOK_BACKOFF_BASE_S": "0.5", "ATTRIB_WEBHOOK_POLL_INTERVAL_S": "0.2"}.items():
        monkeypatch.setenv(key, value)
    clear_cached_config()
    receiver.statuses = [500]  # the first try fails: the worker retries on its own schedule
    start_worker()
    dog = register(client, "dog")["id"]
    wait_searchable(client, [dog])
    job = client.post("/attribute", data={"callback_url": receiver.url},
                      files={"image": ("q.jpg", photo_bytes("dog", 0), "image/jpeg")}).json()

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = client.get(f"/attribute/{job['id']}").json()
        if shown["deliveries"] and shown["deliveries"][0]["status"] == "delivered":
            break
        time.sleep(0.2)
    delivery = shown["deliveries"][0]
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 2), shown
    secret = client.get("/webhooks/secret").json()["secret"]
    last = receiver.received[-1]
    assert verify_signature(secret, last.body, last.headers["x-attrib-signature"])
    body = json.loads(last.body)
    assert body["id"] == delivery["id"] == last.headers["x-attrib-delivery"]
    assert body["data"]["status"] == "done" and body["data"]["matches"][0]["work_id"] == dog
    assert len(receiver.processed) == 1

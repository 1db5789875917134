"""`callback_url` on bulk registration, end to end: a real worker embeds what the import created (one
stored file is gone, so one image fails), the import finishes once nothing is pending, and exactly one
signed `registration.finished` webhook reaches a real receiver on loopback, retried after a 500.
GET /v1/sources/bulk/{id} shows the progress and the delivery."""
import json
import shutil
import time
from pathlib import Path

import pytest

from common.webhooks import verify_signature
from tests.app.test_bulk import GOOD, GOOD_FILES
from tests.conftest import clear_cached_config
from tests.factories import truncated_jpeg
from tests.webhook_receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def wait_delivered(client, import_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = client.get(f"/v1/sources/bulk/{import_id}").json()
        if shown["deliveries"] and shown["deliveries"][0]["status"] == "delivered":
            return shown
        time.sleep(0.3)
    raise AssertionError(f"the import's webhook was never delivered: {shown}")


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_one_signed_webhook_when_every_created_image_is_embedded_or_failed(client, service_env, monkeypatch,
                                                                          start_worker, receiver):
    for key, value in {"ATTRIB_SECRET_KEY": "bulk-" + "k" * 40, "ATTRIB_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
                       "ATTRIB_WEBHOOK_BACKOFF_BASE_S": "0.5", "ATTRIB_WEBHOOK_POLL_INTERVAL_S": "0.2"}.items():
        monkeypatch.setenv(key, value)
    clear_cached_config()
    receiver.statuses = [500]  # the first try fails: the worker retries on its own schedule
    broken = {"item_id": "broken", "title": "Broken", "rights_holder": "studio", "files": ["broken.jpg"]}
    body = {"items": GOOD + [broken], "callback_url": receiver.url}
    response = client.post("/v1/sources/bulk", data={"manifest": json.dumps(body)},
                           files=[("files", f) for f in GOOD_FILES + [("broken.jpg", truncated_jpeg(), "image/jpeg")]])
    assert response.status_code == 200, response.text
    report = response.json()
    import_id = report["import_id"]
    assert report["status_url"].endswith(f"/v1/sources/bulk/{import_id}")
    created = {r["item_id"]: r["work_id"] for r in report["items"] if r["status"] == "created"}
    # No worker yet: the import waits for its three images, and has sent nothing.
    waiting = client.get(f"/v1/sources/bulk/{import_id}").json()
    assert waiting["status"] == "embedding" and waiting["images"]["pending"] == 3
    assert waiting["deliveries"] == [] and receiver.received == []
    # The cat's stored file disappears: its image fails when a worker tries to read it.
    shutil.rmtree(Path(service_env["ATTRIB_DATA_DIR"]) / "storage" / "sources" / created["cat"])

    start_worker()
    shown = wait_delivered(client, import_id)

    assert shown["status"] == "finished" and shown["finished_at"]
    assert shown["items"] == {"created": 2, "duplicate": 0, "refused": 1}
    assert shown["images"] == {"total": 3, "pending": 0, "embedded": 2, "failed": 1, "deleted": 0}
    assert [(f["item_id"], f["work_id"]) for f in shown["failed"]] == [("cat", created["cat"])]
    delivery = shown["deliveries"][0]
    assert (delivery["event"], delivery["attempts"], len(shown["deliveries"])) == ("registration.finished", 2, 1)
    # Signed with the key's secret, the same delivery id on both tries, processed once by the receiver.
    secret = client.get("/v1/webhooks/secret").json()["secret"]
    assert len(receiver.received) == 2 and len(receiver.processed) == 1
    last = receiver.received[-1]
    assert verify_signature(secret, last.body, last.headers["x-attrib-signature"])
    assert last.headers["x-attrib-event"] == "registration.finished"
    sent = json.loads(last.body)
    assert sent["id"] == delivery["id"] == last.headers["x-attrib-delivery"]
    assert sent["data"]["id"] == import_id and sent["data"]["items"] == shown["items"]
    assert sent["data"]["images"] == shown["images"] and sent["data"]["failed"] == shown["failed"]
    # "Finished" means searchable: the dog's work is embedded, the cat's is not and says why.
    assert client.get(f"/v1/sources/{created['dog']}").json()["searchable"] is True
    cat = client.get(f"/v1/sources/{created['cat']}").json()
    assert cat["searchable"] is False and cat["images"][0]["state"] == "failed"


def test_bulk_callback_refused_before_anything_is_stored(client, monkeypatch):
    """SSRF: a callback to loopback is refused (422) unless allow-listed; without ATTRIB_SECRET_KEY the
    server sends no webhooks at all. Either way no work is registered."""
    manifest = {"items": GOOD[:1], "callback_url": "http://127.0.0.1:9/hook"}
    monkeypatch.setenv("ATTRIB_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")
    clear_cached_config()
    disabled = client.post("/v1/sources/bulk", data={"manifest": json.dumps(manifest)},
                           files=[("files", f) for f in GOOD_FILES[:2]])
    assert disabled.status_code == 422 and disabled.json()["reason"] == "webhooks_disabled"
    monkeypatch.setenv("ATTRIB_SECRET_KEY", "bulk-" + "k" * 40)
    monkeypatch.delenv("ATTRIB_WEBHOOK_ALLOW_HOSTS")
    clear_cached_config()
    unsafe = client.post("/v1/sources/bulk", data={"manifest": json.dumps(manifest)},
                         files=[("files", f) for f in GOOD_FILES[:2]])
    assert unsafe.status_code == 422 and unsafe.json()["reason"] == "unsafe_callback_url"
    assert client.get("/v1/sources?with_count=true").json()["count"] == 0

"""Webhook delivery from the outbox, in this process against a real HTTP receiver on loopback and the
real database: signatures, retries after a 500 with the same delivery id (the receiver dedupes),
a killed deliverer's row coming due again, giving up, and the send-time SSRF re-check."""
import json
import time
import uuid

import pytest
from redis import Redis
from sqlalchemy import select, update

from common import outbox
from common.db.models import AttributionJob, DeliveryStatus, JobStatus, WebhookDelivery, WebhookSecret
from common.db.session import new_session
from common.jobs import get_queues
from common.recovery import recover
from common.settings import get_settings
from common.storage import LocalStorage
from common.webhooks import verify_signature
from tests.conftest import clear_cached_config
from tests.factories import photo_bytes
from tests.webhook_receiver import Receiver
from worker.deliveries import Deliverer, DeliveryLoop, EventWaker

SECRET_KEY = "test-secret-key-" + "x" * 32


@pytest.fixture
def webhook_env(service_env, monkeypatch):
    env = {"ATTRIB_SECRET_KEY": SECRET_KEY, "ATTRIB_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
           "ATTRIB_WEBHOOK_BACKOFF_BASE_S": "1.0", "ATTRIB_WEBHOOK_BACKOFF_MAX_S": "1.0",
           "ATTRIB_WEBHOOK_MAX_ATTEMPTS": "3", "ATTRIB_WEBHOOK_LEASE_S": "0.5"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    clear_cached_config()
    return {**service_env, **env}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def submit(client, callback_url: str) -> str:
    response = client.post("/attribute", data={"callback_url": callback_url},
                           files={"image": ("q.jpg", photo_bytes("dog", 1), "image/jpeg")})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def give_up_on_dead_worker(job_id: str, passes: int = 1) -> None:
    """Finish the job the way recovery does after a worker died on its last attempt."""
    settings = get_settings()
    with new_session() as session:
        session.execute(update(AttributionJob).where(AttributionJob.id == uuid.UUID(job_id))
                        .values(status=JobStatus.running, worker="gone", attempts=settings.job_max_attempts))
        session.commit()
    for _ in range(passes):
        _recovery_pass(settings)


def _recovery_pass(settings) -> None:
    with new_session() as session:
        redis = Redis.from_url(settings.redis_url)
        recover(session, redis, get_queues(redis, settings.queue_name), LocalStorage(settings.storage_dir),
                max_attempts=settings.job_max_attempts, grace_s=3600)


def deliveries(job_id: str) -> list[WebhookDelivery]:
    with new_session() as session:
        return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == uuid.UUID(job_id))))


def wait_due(seconds: float = 1.05) -> None:
    time.sleep(seconds)  # back-off is 0.5 to 1 s and the lease 0.5 s in these tests


def test_giving_up_a_job_queues_exactly_one_delivery(client, webhook_env, receiver):
    job_id = submit(client, receiver.url)
    assert deliveries(job_id) == []  # nothing before the job finishes
    give_up_on_dead_worker(job_id, passes=2)  # the second pass finds nothing to take: still one row
    rows = deliveries(job_id)
    assert len(rows) == 1 and rows[0].status == DeliveryStatus.pending
    assert rows[0].payload["data"]["status"] == "failed" and rows[0].payload["data"]["id"] == job_id


def test_signed_delivery_retried_after_500_with_the_same_id(client, webhook_env, receiver):
    receiver.statuses = [500]
    job_id = submit(client, receiver.url)
    give_up_on_dead_worker(job_id)
    deliverer = Deliverer(get_settings())

    assert deliverer.run_once() == 1
    assert deliverer.run_once() == 0  # backing off (at least 0.5 s here): not due yet
    first = client.get(f"/attribute/{job_id}").json()["deliveries"][0]
    assert first["status"] == "pending" and first["attempts"] == 1 and first["last_status_code"] == 500
    assert "HTTP 500" in first["last_error"] and first["next_attempt_at"] is not None
    wait_due()
    assert deliverer.run_once() == 1

    shown = client.get(f"/attribute/{job_id}").json()["deliveries"]
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in shown] == [("delivered", 2, 200)]
    secret = client.get("/webhooks/secret").json()["secret"]
    assert len(receiver.received) == 2
    for request in receiver.received:
        assert verify_signature(secret, request.body, request.headers["x-attrib-signature"])
        assert request.headers["x-attrib-event"] == "attribution.finished"
    ids = {r.headers["x-attrib-delivery"] for r in receiver.received}
    assert ids == {shown[0]["id"]}  # a retry is the same delivery: the receiver processed it once
    assert len(receiver.processed) == 1
    assert receiver.received[0].body == receiver.received[1].body
    body = json.loads(receiver.received[0].body)
    assert body["id"] == shown[0]["id"] and body["data"]["id"] == job_id
    assert not verify_signature("whsec_wrong", receiver.received[0].body,
                                receiver.received[0].headers["x-attrib-signature"])


def test_a_killed_deliverer_leaves_the_row_due_again(client, webhook_env, receiver):
    job_id = submit(client, receiver.url)
    give_up_on_dead_worker(job_id)
    row = deliveries(job_id)[0]
    with new_session() as session:  # claimed, then the process died before sending
        assert outbox.claim(session, delivery_id=row.id, seen_attempts=0, claimer="killed", lease_s=0.4)
        assert outbox.claim(session, delivery_id=row.id, seen_attempts=0, claimer="other", lease_s=0.4) is None
    deliverer = Deliverer(get_settings())
    assert deliverer.run_once() == 0 and receiver.received == []  # held by the lease
    wait_due()
    assert deliverer.run_once() == 1
    row = deliveries(job_id)[0]
    assert row.status == DeliveryStatus.delivered and row.attempts == 2 and len(receiver.received) == 1


def test_gives_up_after_the_last_attempt(client, webhook_env, receiver):
    receiver.statuses = [500, 503, 502, 500]
    job_id = submit(client, receiver.url)
    give_up_on_dead_worker(job_id)
    deliverer = Deliverer(get_settings())
    for _ in range(3):
        deliverer.run_once()
        wait_due()
    assert deliverer.run_once() == 0
    row = deliveries(job_id)[0]
    assert row.status == DeliveryStatus.failed and row.attempts == 3 and len(receiver.received) == 3


def test_send_time_check_refuses_a_host_no_longer_allowed(client, webhook_env, receiver, monkeypatch):
    job_id = submit(client, receiver.url)
    give_up_on_dead_worker(job_id)
    monkeypatch.setenv("ATTRIB_WEBHOOK_ALLOW_HOSTS", "")
    clear_cached_config()
    Deliverer(get_settings()).run_once()
    row = deliveries(job_id)[0]
    assert receiver.received == [] and row.status == DeliveryStatus.pending
    assert "non-public address" in row.last_error


def test_secret_is_stored_encrypted(client, webhook_env):
    secret = client.get("/webhooks/secret").json()["secret"]
    assert secret.startswith("whsec_") and client.get("/webhooks/secret").json()["secret"] == secret
    with new_session() as session:
        stored = session.scalars(select(WebhookSecret)).one().secret_encrypted
    assert secret not in stored and secret.removeprefix("whsec_") not in stored


def test_rotated_secret_never_enters_idempotency_records(client, webhook_env, redis_client):
    headers = {"Idempotency-Key": f"rotate-{uuid.uuid4()}"}
    first = client.post("/webhooks/secret/rotate", headers=headers)
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    second = client.post("/webhooks/secret/rotate", headers=headers)
    assert second.status_code == 200 and "idempotent-replayed" not in second.headers
    assert second.json()["secret"] != first.json()["secret"]
    assert client.get("/webhooks/secret").json()["secret"] == second.json()["secret"]
    for key in redis_client.scan_iter("attrib:idem:*"):
        assert first.json()["secret"].encode() not in (redis_client.get(key) or b"")


def test_webhooks_need_a_secret_key(client, service_env, monkeypatch):
    monkeypatch.delenv("ATTRIB_SECRET_KEY", raising=False)
    clear_cached_config()
    response = client.post("/attribute", data={"callback_url": "https://93.184.216.34/hook"},
                           files={"image": ("q.jpg", photo_bytes("dog", 1), "image/jpeg")})
    assert response.status_code == 422 and response.json()["reason"] == "webhooks_disabled"
    assert "ATTRIB_SECRET_KEY" in response.json()["detail"]
    assert client.get("/webhooks/secret").status_code == 404


def test_the_connection_goes_to_the_checked_address(client, webhook_env, receiver, monkeypatch):
    """Pinning against DNS rebinding: the name is resolved once, by the check; the request goes to that
    address with the original Host. `hooks.invalid` exists in no DNS, so if the HTTP client resolved the
    name again itself, the send would fail."""
    import common.webhooks as webhooks
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://hooks.invalid:{port}/hooks/attrib"
    monkeypatch.setenv("ATTRIB_WEBHOOK_ALLOW_HOSTS", "hooks.invalid")
    clear_cached_config()
    monkeypatch.setattr(webhooks, "_resolve", lambda host, port: ["127.0.0.1"] if host == "hooks.invalid" else [])
    job_id = submit(client, url)
    give_up_on_dead_worker(job_id)
    Deliverer(get_settings()).run_once()
    assert deliveries(job_id)[0].status == DeliveryStatus.delivered, deliveries(job_id)[0].last_error
    assert receiver.received[0].headers["host"] == f"hooks.invalid:{port}"


def test_pinned_targets_keep_host_and_tls_name(monkeypatch):
    import common.webhooks as webhooks
    monkeypatch.setattr(webhooks, "_resolve", lambda host, port: ["2606:4700::1", "93.184.216.34"])
    targets = webhooks.pinned_targets("https://hooks.example.com:8443/a?b=1")
    assert targets == [
        ("https://[2606:4700::1]:8443/a?b=1", {"Host": "hooks.example.com:8443"}, {"sni_hostname": "hooks.example.com"}),
        ("https://93.184.216.34:8443/a?b=1", {"Host": "hooks.example.com:8443"}, {"sni_hostname": "hooks.example.com"})]
    monkeypatch.setattr(webhooks, "_resolve", lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(webhooks.UnsafeCallback):  # one private answer among public ones is enough
        webhooks.pinned_targets("https://hooks.example.com/a")


def test_a_finished_job_wakes_the_deliverer_before_its_next_poll(client, webhook_env, receiver, monkeypatch):
    monkeypatch.setenv("ATTRIB_WEBHOOK_POLL_INTERVAL_S", "300")  # only the event can bring it back early
    clear_cached_config()
    job_id = submit(client, receiver.url)
    loop = DeliveryLoop(get_settings())
    waker = EventWaker(get_settings().redis_url, loop)
    loop.start()
    waker.start()
    try:
        time.sleep(1.5)  # the loop's first pass found nothing and now sleeps for 300 s
        give_up_on_dead_worker(job_id)  # recovery gives up: the row commits, then the event is published
        deadline = time.monotonic() + 30
        # the receiver answers before the deliverer commits `delivered`: wait for the row, not the request
        while deliveries(job_id)[0].status != DeliveryStatus.delivered and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(receiver.received) == 1
        assert deliveries(job_id)[0].status == DeliveryStatus.delivered
    finally:
        waker.stop()
        loop.stop()

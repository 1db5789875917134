"""Webhook sending (docs/design.md §6): claim due outbox rows by compare-and-set, re-check the URL
against SSRF (DNS may have changed since submit), POST the signed body, record the outcome with our own
exponential back-off (RQ's scheduler is off, so retry timing cannot live in RQ).

The connection goes to the address that was checked (pinned; `Host` and TLS server name keep the
original host), so a DNS answer that changes after the check cannot redirect it.

Runs as a thread in every worker (`python -m worker`), or alone: `python -m worker.deliveries`.
Several deliverers at once are safe: a row is sent by whoever wins its compare-and-set; a deliverer
killed mid-send leaves the row due again after `ATTRIB_WEBHOOK_LEASE_S`, and the receiver dedupes
the second send on `X-Attrib-Delivery`. No torch is imported here."""
import argparse
import json
import logging
import os
import socket
import threading

import httpx
from redis import Redis
from redis.exceptions import RedisError

from common import outbox
from common.db.models import WebhookDelivery
from common.db.session import new_session
from common.events import CHANNEL
from common.settings import Settings, get_settings
from common.webhooks import (
    DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, pinned_targets, signature_header,
)

log = logging.getLogger(__name__)


def body_of(delivery: WebhookDelivery) -> bytes:
    """The exact bytes sent and signed; the same on every retry of the row."""
    return json.dumps({"id": str(delivery.id), **delivery.payload}, sort_keys=True,
                      separators=(",", ":")).encode()


class Deliverer:
    def __init__(self, settings: Settings, name: str | None = None):
        self.settings = settings
        self.name = name or f"deliverer-{socket.gethostname()}-{os.getpid()}"
        # No keep-alive: connections are opened to pinned addresses, and a pooled one must never carry a
        # request for another host name (its TLS session was made for the first one).
        self.client = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False,
                                   limits=httpx.Limits(max_keepalive_connections=0))

    def run_once(self) -> int:
        """Send every row due now; returns how many were attempted."""
        attempted = 0
        with new_session() as session:
            for delivery_id, attempts in outbox.due_ids(session):
                delivery = outbox.claim(session, delivery_id=delivery_id, seen_attempts=attempts,
                                        claimer=self.name, lease_s=self.settings.webhook_lease_s)
                if delivery is not None:  # else another deliverer took it first
                    self._send(session, delivery)
                    attempted += 1
        return attempted

    def _send(self, session, delivery: WebhookDelivery) -> None:
        s = self.settings
        try:
            targets = pinned_targets(delivery.url, allow_hosts=s.webhook_allow_host_set)
            body = body_of(delivery)
            secret = outbox.ensure_secret(session, key_id=delivery.key_id, secret_key=s.secret_key)
            headers = {"Content-Type": "application/json", DELIVERY_HEADER: str(delivery.id),
                       EVENT_HEADER: delivery.event, SIGNATURE_HEADER: signature_header(secret, body),
                       "User-Agent": "attrib-webhooks/1"}
            response = self._post_to_first_reachable(targets, body, headers)
        except Exception as exc:  # unsafe URL, network error, missing secret key: all are retried later
            session.rollback()
            self._failed(session, delivery, f"{type(exc).__name__}: {exc}", None)
            return
        if 200 <= response.status_code < 300:
            outbox.record_success(session, delivery=delivery, status_code=response.status_code)
        else:
            self._failed(session, delivery, f"HTTP {response.status_code}: {response.text[:200]}",
                         response.status_code)

    def _post_to_first_reachable(self, targets, body: bytes, headers: dict) -> httpx.Response:
        """Try the checked addresses in the resolver's order, as any client would (IPv6, then IPv4...)."""
        for n, (target, host_header, extensions) in enumerate(targets):
            try:
                return self.client.post(target, content=body, headers={**headers, **host_header},
                                        extensions=extensions)
            except httpx.ConnectError:
                if n == len(targets) - 1:
                    raise
        raise httpx.ConnectError("no address to connect to")

    def _failed(self, session, delivery: WebhookDelivery, error: str, status_code: int | None) -> None:
        s = self.settings
        log.warning("webhook %s attempt %d to %s failed: %s", delivery.id, delivery.attempts, delivery.url, error)
        outbox.record_failure(session, delivery=delivery, error=error, status_code=status_code,
                              max_attempts=s.webhook_max_attempts, base_s=s.webhook_backoff_base_s,
                              max_s=s.webhook_backoff_max_s)


class DeliveryLoop(threading.Thread):
    """Polls the outbox every `webhook_poll_interval_s`; `wake()` (e.g. from a job-finished event)
    makes it look at once. Correctness never depends on the wake-up: the poll alone delivers."""

    def __init__(self, settings: Settings, name: str | None = None):
        super().__init__(name="deliveries", daemon=True)
        self.deliverer = Deliverer(settings, name)
        self.interval_s = settings.webhook_poll_interval_s
        self.stopped, self.woken = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.deliverer.run_once()
            except Exception as exc:  # the database may be restarting; try again next round
                log.warning("delivery pass failed: %s", exc)
            self.woken.wait(self.interval_s)
            self.woken.clear()

    def wake(self) -> None:
        self.woken.set()

    def stop(self) -> None:
        self.stopped.set()
        self.woken.set()


class EventWaker(threading.Thread):
    """Wakes a DeliveryLoop when a job finishes (the job-finished event, common/events.py), so a webhook
    leaves at once instead of at the next poll; the poll stays the safety net (pub/sub is lossy)."""

    def __init__(self, redis_url: str, loop: DeliveryLoop):
        super().__init__(name="delivery-events", daemon=True)
        self.redis_url, self.loop = redis_url, loop
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                pubsub = Redis.from_url(self.redis_url).pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                while not self.stopped.is_set():
                    if pubsub.get_message(timeout=1.0) is not None:
                        self.loop.wake()
                pubsub.close()
            except RedisError as exc:  # Redis restarting: the poll delivers meanwhile
                log.warning("job-finished events unavailable (%s); retrying", exc)
                self.stopped.wait(2.0)

    def stop(self) -> None:
        self.stopped.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.deliveries", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="send what is due now, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = get_settings()
    if args.once:
        print(f"attempted {Deliverer(settings).run_once()} deliveries")
        return 0
    loop = DeliveryLoop(settings)
    loop.start()
    try:
        loop.join()
    except KeyboardInterrupt:
        loop.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

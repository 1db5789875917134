"""Background threads of a worker: the heartbeat that tells the API this worker is alive with a loaded
index, and the periodic recovery pass (common.recovery), each on its own schedule so a slow recovery
pass can never delay a beat and let this live worker look dead."""
import json
import logging
import os
import threading
import time
from collections.abc import Callable

from redis import Redis

from common.jobs import heartbeat_key

log = logging.getLogger(__name__)


class Periodic(threading.Thread):
    """Calls `action` every `interval_s` until stopped; failures are logged and retried next time."""

    def __init__(self, name: str, interval_s: float, action: Callable[[], None]):
        super().__init__(name=name, daemon=True)
        self.interval_s, self.action = interval_s, action
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                self.action()
            except Exception as exc:  # Redis or the database may be restarting
                log.warning("%s failed: %s", self.name, exc)

    def stop(self) -> None:
        self.stopped.set()


class Heartbeat(Periodic):
    def __init__(self, redis: Redis, queue_name: str, worker_name: str, describe, ttl_s: int):
        # Several beats per TTL, so one slow beat never lets a live worker's key expire.
        super().__init__("heartbeat", min(5.0, ttl_s / 3), self.beat)
        self.redis, self.worker_name, self.describe, self.ttl_s = redis, worker_name, describe, ttl_s
        self.key = heartbeat_key(queue_name, worker_name)

    def beat(self) -> None:
        payload = {"worker": self.worker_name, "pid": os.getpid(), "beat_at": time.time(), **self.describe()}
        self.redis.set(self.key, json.dumps(payload), ex=self.ttl_s)

    def stop(self) -> None:
        super().stop()
        try:
            self.redis.delete(self.key)
        except Exception:
            pass

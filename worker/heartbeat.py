"""A background thread that tells the API this worker is alive with a loaded index, and runs the
recovery pass (common.recovery) so that nothing queued is lost when Redis or a worker restarts."""
import json
import logging
import os
import threading

from redis import Redis

from common.jobs import WORKER_HEARTBEAT_TTL_S, heartbeat_key

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, redis: Redis, queue_name: str, worker_name: str, describe, on_beat=None,
                 ttl_s: int = WORKER_HEARTBEAT_TTL_S):
        super().__init__(name="heartbeat", daemon=True)
        self.redis, self.worker_name, self.describe = redis, worker_name, describe
        self.key = heartbeat_key(queue_name, worker_name)
        # Several beats per TTL, so one slow beat never lets a live worker's key expire.
        self.on_beat, self.ttl_s, self.interval_s = on_beat, ttl_s, min(5.0, ttl_s / 3)
        self.stopped = threading.Event()

    def beat(self) -> None:
        payload = {"worker": self.worker_name, "pid": os.getpid(), **self.describe()}
        self.redis.set(self.key, json.dumps(payload), ex=self.ttl_s)

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                self.beat()
                if self.on_beat:
                    self.on_beat()
            except Exception as exc:  # Redis or the database may be restarting; try again next beat
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self.stopped.set()
        try:
            self.redis.delete(self.key)
        except Exception:
            pass

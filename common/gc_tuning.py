"""Python's garbage collector in the long-lived service processes.

A full collection (generation 2) walks every object the collector tracks, and a started API process
holds more than 50k of them (FastAPI, pydantic models, SQLAlchemy, the routes). Every request in flight
in that process waits for it: in the side-by-side enqueue bench one full collection took 84-97 ms
(bench/results/ingest/runs/2026-11-27-amd-gc-freeze.md). `freeze_startup_objects` moves what start-up
created into the permanent generation, which collections skip (5-7 ms each there). Frozen objects are
still freed when their last reference goes; only a frozen reference cycle is never collected, which is
why only the API freezes: its start-up objects live as long as it does, while a worker replaces its
encoder and index when a new pair is published.

Slow collections are logged (`attrib.gc`) so that a latency tail can be traced to them. The callback
only records them: it runs wherever a collection starts, possibly inside a write to the log's own
stream, so a thread of its own writes the log lines."""
import collections
import gc
import logging
import threading
import time

log = logging.getLogger("attrib.gc")


def freeze_startup_objects() -> int:
    """Collect once, then freeze every surviving object; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class SlowCollectionLog:
    """A `gc.callbacks` entry noting each collection lasting `threshold_ms` or longer; `drain()` logs
    them, every `every_s` on a daemon thread once installed."""

    def __init__(self, threshold_ms: float, every_s: float = 1.0):
        self.threshold_s, self.every_s, self._started = threshold_ms / 1000, every_s, 0.0
        self._slow: collections.deque = collections.deque(maxlen=1000)
        self._stop = threading.Event()

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        if took >= self.threshold_s:
            self._slow.append((info["generation"], took * 1000, info["collected"]))

    def drain(self) -> int:
        """Log the collections noted since the last call; returns how many."""
        count = 0
        while self._slow:
            generation, ms, collected = self._slow.popleft()
            log.warning("garbage collection of generation %d took %.1f ms (%d objects collected)",
                        generation, ms, collected)
            count += 1
        return count

    def install(self, thread: bool = True) -> "SlowCollectionLog":
        gc.callbacks.append(self)
        if thread:
            threading.Thread(target=self._run, name="gc-log", daemon=True).start()
        return self

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
        self._stop.set()
        self.drain()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.drain()


def tune_collector(freeze: bool, log_slow_ms: float) -> SlowCollectionLog | None:
    """What a service process does once started (settings GC_FREEZE, GC_LOG_SLOW_MS; the worker never
    freezes, see above)."""
    if freeze:
        log.info("froze %d objects of start-up out of garbage collection", freeze_startup_objects())
    return SlowCollectionLog(log_slow_ms).install() if log_slow_ms > 0 else None

"""Python's garbage collector in the long-lived service processes (API, worker).

A full collection (generation 2) walks every object the collector tracks. An API process holds about
170k of them once started (FastAPI, pydantic models, SQLAlchemy, the routes), and one full collection
took 83-180 ms on this project's 2-core VM (measured with `gc.collect(2)` in a started app, the CPU
shared with a benchmark). Every coroutine of the process waits for it, so the requests in flight turn
slow together: a burst of slow requests every few seconds, as the enqueue benchmark saw (README,
*Scaling*). `freeze_startup_objects` moves what start-up created into the permanent generation, which
collections skip; cycles made afterwards are still collected, and the frozen objects are never freed
(they live as long as the process anyway). Slow collections are logged (`attrib.gc`) so that a
latency tail can be traced to them."""
import gc
import logging
import time

log = logging.getLogger("attrib.gc")


def freeze_startup_objects() -> int:
    """Collect once, then freeze every surviving object; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class SlowCollectionLog:
    """A `gc.callbacks` entry that logs each collection lasting `threshold_ms` or longer. It only reads
    the clock and calls `logging` (whose locks are re-entrant), since it runs wherever a collection
    happens to start."""

    def __init__(self, threshold_ms: float):
        self.threshold_s, self._started = threshold_ms / 1000, 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        if took >= self.threshold_s:
            log.warning("garbage collection of generation %d took %.1f ms (%d objects collected)",
                        info["generation"], took * 1000, info["collected"])

    def install(self) -> "SlowCollectionLog":
        gc.callbacks.append(self)
        return self

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


def tune_collector(freeze: bool, log_slow_ms: float) -> SlowCollectionLog | None:
    """What a service process does once started (settings GC_FREEZE, GC_LOG_SLOW_MS)."""
    if freeze:
        log.info("froze %d objects of start-up out of garbage collection", freeze_startup_objects())
    return SlowCollectionLog(log_slow_ms).install() if log_slow_ms > 0 else None

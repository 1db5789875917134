"""Job latencies this worker observed, sent with its heartbeat (worker.heartbeat) so the API's
/metrics can expose them for every live worker without a port per worker (app.queue_metrics)."""
import threading
from bisect import bisect_left

# Seconds; the same buckets as a Prometheus histogram (cumulative counts are computed by the API).
BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class JobStats:
    def __init__(self):
        self._lock = threading.Lock()
        self._series: dict[str, dict] = {}

    def observe(self, kind: str, seconds: float, items: int = 1) -> None:
        """One finished job of `kind` ('attribute': submit to result; 'embed': job run time)."""
        with self._lock:
            series = self._series.setdefault(kind, {"buckets": [0] * (len(BUCKETS) + 1), "sum": 0.0,
                                                    "count": 0, "items": 0})
            series["buckets"][bisect_left(BUCKETS, seconds)] += 1
            series["sum"] += seconds
            series["count"] += 1
            series["items"] += items

    def snapshot(self) -> dict:
        with self._lock:
            return {kind: {**s, "buckets": list(s["buckets"])} for kind, s in self._series.items()}


STATS = JobStats()

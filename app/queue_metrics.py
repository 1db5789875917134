"""Queue and worker metrics for Prometheus, computed when /metrics is scraped.

From Redis: jobs waiting and running per queue; from the database: images waiting to be embedded (the
embedding backlog); from each live worker's heartbeat (worker.heartbeat, worker.stats): its index size
and type, snapshot age and job latency histograms. No worker needs a port of its own, and every API
process answers the same numbers."""
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select

from common.db.models import ImageState, SourceImage, Work
from common.jobs import KINDS, get_queues, holds_index, live_heartbeats

_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)  # = worker.stats.BUCKETS


class QueueCollector:
    def __init__(self, redis, session, base: str):
        self.redis, self.session, self.base = redis, session, base

    def collect(self):
        yield from self._queues()
        yield self._backlog()
        yield from self._workers(self._heartbeats())

    def _queues(self):
        queues = get_queues(self.redis, self.base)
        waiting = GaugeMetricFamily("attrib_queue_depth", "jobs waiting in a queue", labels=["queue"])
        running = GaugeMetricFamily("attrib_queue_running", "jobs running from a queue", labels=["queue"])
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues.by_kind():
            pipe.llen(queue.key)
            pipe.zcard(queue.started_job_registry.key)
        counts = pipe.execute()
        for i, kind in enumerate(KINDS):
            waiting.add_metric([kind], counts[2 * i])
            running.add_metric([kind], counts[2 * i + 1])
        return waiting, running

    def _backlog(self):
        pending = self.session.scalar(select(func.count()).select_from(SourceImage).join(Work).where(
            SourceImage.state == ImageState.pending, Work.deleted_at.is_(None)))
        return GaugeMetricFamily("attrib_embedding_backlog_images", "registered images not embedded yet",
                                 value=int(pending or 0))

    def _heartbeats(self) -> list[dict]:
        return live_heartbeats(self.redis, self.base)

    def _workers(self, beats: list[dict]):
        size = GaugeMetricFamily("attrib_index_vectors", "vectors in a worker's index", labels=["worker"])
        kind = GaugeMetricFamily("attrib_index_info", "a worker's index type and encoder (value 1)",
                                 labels=["worker", "index_type", "encoder_id"])
        age = GaugeMetricFamily("attrib_snapshot_age_seconds", "age of the index snapshot a worker loaded or wrote",
                                labels=["worker"])
        pending = GaugeMetricFamily("attrib_index_pending_changes", "changes held beside a worker's index base "
                                    "(exact delta + masked ids; every query scans the delta) until the base is next folded or rebuilt",
                                    labels=["worker"])
        latency = HistogramMetricFamily("attrib_job_seconds", "job latency seen by workers (attribute: submit to "
                                        "result; embed: job run time)", labels=["worker", "kind"])
        embedded = GaugeMetricFamily("attrib_worker_embedded_images", "images this worker embedded since start",
                                     labels=["worker"])
        now = time.time()
        for beat in beats:
            name = str(beat.get("worker"))
            if holds_index(beat):
                size.add_metric([name], beat.get("index_size") or 0)
                kind.add_metric([name, str(beat.get("index_type", "IDMap2,Flat")), str(beat.get("encoder_id"))], 1)
                index = beat.get("index") or {}
                if "delta_count" in index:  # FAISS stores; a Milvus collection indexes its own changes
                    pending.add_metric([name], index["delta_count"] + index.get("masked_count", 0))
            if beat.get("snapshot_saved_at"):
                age.add_metric([name], max(0.0, now - float(beat["snapshot_saved_at"])))
            stats = beat.get("stats") or {}
            for job_kind, series in stats.items():
                latency.add_metric([name, job_kind], _cumulative(series["buckets"]), series["sum"])
            embedded.add_metric([name], (stats.get("embed") or {}).get("items", 0))
        return size, kind, age, pending, latency, embedded


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    total, out = 0, []
    for bound, count in zip([*map(str, _BUCKETS), "+Inf"], counts):
        total += count
        out.append((bound, total))
    return out


def render_queue_metrics(redis, session, base: str) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(redis, session, base))
    return generate_latest(registry)

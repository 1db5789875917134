"""/metrics exposes queue depth per queue, the embedding backlog and each live worker's index and job
latencies (from its heartbeat), for Prometheus."""
import json
import time

from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from common.settings import get_settings
from tests.factories import photo_bytes
from worker.heartbeat import Heartbeat
from worker.stats import JobStats


def samples(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_queue_depth_backlog_and_worker_numbers(client):
    manifest = {"items": [{"item_id": "dog", "title": "Dog", "rights_holder": "s", "files": ["a.jpg", "b.jpg"]}]}
    files = [("files", (f"{n}.jpg", photo_bytes("dog", i), "image/jpeg")) for i, n in enumerate("ab")]
    assert client.post("/sources/bulk", data={"manifest": json.dumps(manifest)}, files=files).status_code == 200
    for _ in range(2):
        client.post("/attribute", files={"image": ("q.jpg", photo_bytes("cat", 0), "image/jpeg")})
    stats = JobStats()
    stats.observe("attribute", 0.2)
    stats.observe("attribute", 3.0)
    settings = get_settings()
    beat = Heartbeat(Redis.from_url(settings.redis_url), settings.queue_name, "w1",
                     lambda: {"index_size": 1234, "index_type": "IVF1024,PQ64", "encoder_id": "enc",
                              "index": {"delta_count": 300, "masked_count": 12},
                              "snapshot_saved_at": time.time() - 60, "stats": stats.snapshot()}, ttl_s=30)
    embed_only = Heartbeat(Redis.from_url(settings.redis_url), settings.queue_name, "w2",  # holds no index
                           lambda: {"index_size": None, "index_type": None, "encoder_id": "enc",
                                    "snapshot_saved_at": None, "stats": {}}, ttl_s=30)
    beat.beat()
    embed_only.beat()
    try:
        found = samples(client)
    finally:
        beat.stop()
        embed_only.stop()
    assert not [key for key in found if key[0].startswith(("attrib_index", "attrib_snapshot")) and ("worker", "w2") in key[1]]
    assert found[("attrib_queue_depth", (("queue", "attribute"),))] == 2
    assert found[("attrib_queue_depth", (("queue", "embed"),))] == 1
    assert found[("attrib_embedding_backlog_images", ())] == 2
    assert found[("attrib_index_vectors", (("worker", "w1"),))] == 1234
    assert found[("attrib_index_info", (("encoder_id", "enc"), ("index_type", "IVF1024,PQ64"), ("worker", "w1")))] == 1
    assert 59 <= found[("attrib_snapshot_age_seconds", (("worker", "w1"),))] < 120
    assert found[("attrib_index_pending_changes", (("worker", "w1"),))] == 312
    assert found[("attrib_job_seconds_bucket", (("kind", "attribute"), ("le", "0.25"), ("worker", "w1")))] == 1
    assert found[("attrib_job_seconds_count", (("kind", "attribute"), ("worker", "w1")))] == 2

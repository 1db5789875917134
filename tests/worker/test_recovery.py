"""The recovery pass on its own (no worker process): each branch re-derives queue state from the
database, and taking a job from a dead worker is a compare-and-set, so two passes never both win."""
import uuid
from datetime import datetime, timedelta, timezone

from redis import Redis
from sqlalchemy import update

from common.db.models import AttributionJob, JobStatus, SourceImage
from common.db.session import new_session
from common.jobs import embed_job_id, get_queues
from common.recovery import _take_from_dead_worker, recover
from common.settings import get_settings
from common.storage import LocalStorage
from tests.factories import photo_bytes


def setup_pass(service_env):
    settings = get_settings()
    redis = Redis.from_url(settings.redis_url)
    queues = get_queues(redis, settings.queue_name)
    for queue in queues.by_kind():
        queue.empty()  # as after a Redis restart: the rows remain, the queue is gone
    return redis, queues, LocalStorage(settings.storage_dir)


def age_rows(model, column) -> None:
    with new_session() as session:
        session.execute(update(model).values({column: datetime.now(timezone.utc) - timedelta(minutes=5)}))
        session.commit()


def run_pass(redis, queues, storage) -> dict:
    with new_session() as session:
        return recover(session, redis, queues, storage, max_attempts=3, grace_s=1)


def test_pending_images_and_queued_jobs_are_re_enqueued(client, service_env):
    files = [("images", ("a.jpg", photo_bytes("dog", 0), "image/jpeg"))]
    work = client.post("/sources", files=files, data={"title": "dog", "rights_holder": "s"}).json()
    job = client.post("/attribute", files={"image": ("q.jpg", photo_bytes("dog", 1), "image/jpeg")}).json()
    redis, queues, storage = setup_pass(service_env)
    age_rows(SourceImage, SourceImage.created_at)
    age_rows(AttributionJob, AttributionJob.created_at)

    counts = run_pass(redis, queues, storage)
    assert counts["embeds"] == 1 and counts["requeued"] == 1
    assert queues.attribute.job_ids == [f"attr-{job['id']}"]
    assert queues.embed.job_ids == [embed_job_id([work["images"][0]["id"]])]
    assert run_pass(redis, queues, storage) == {"orphaned_running": 0, "requeued": 0, "embeds": 0}


def test_a_dead_workers_job_is_taken_once(client, service_env):
    job = client.post("/attribute", files={"image": ("q.jpg", photo_bytes("dog", 1), "image/jpeg")}).json()
    redis, queues, storage = setup_pass(service_env)
    job_id = uuid.UUID(job["id"])
    with new_session() as session:
        session.execute(update(AttributionJob).values(status=JobStatus.running, worker="gone", attempts=1))
        session.commit()
        # A pass that read the row before another changed it must not win.
        assert not _take_from_dead_worker(session, job_id, "gone", attempts=2, final=False)
    assert run_pass(redis, queues, storage)["orphaned_running"] == 1
    assert run_pass(redis, queues, storage)["orphaned_running"] == 0
    with new_session() as session:
        row = session.get(AttributionJob, job_id)
        assert row.status == JobStatus.queued and "stopped during the job" in row.error
    assert queues.attribute.job_ids == [f"attr-{job['id']}"]

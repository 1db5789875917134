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
    assert run_pass(redis, queues, storage) == {"orphaned_running": 0, "requeued": 0, "embeds": 0,
                                                 "imports_finished": 0}


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


def test_a_job_finishing_during_the_pass_is_not_run_again(client, service_env, monkeypatch):
    """Issue 8 saw 502 runs for 500 works: a pass read a row as queued, the job then finished and left
    Redis, and the pass re-enqueued it. A row is now re-enqueued only if still unfinished after Redis
    was read."""
    import common.recovery as recovery
    submitted = client.post("/attribute", files={"image": ("q.jpg", photo_bytes("dog", 1), "image/jpeg")})
    assert submitted.status_code == 202
    redis, queues, storage = setup_pass(service_env)
    age_rows(AttributionJob, AttributionJob.created_at)
    real_live_jobs = recovery.live_jobs

    def finishing_meanwhile(*args):
        with new_session() as session:  # the worker finishes the job between the two reads
            session.execute(update(AttributionJob).values(status=JobStatus.done))
            session.commit()
        return real_live_jobs(*args)
    monkeypatch.setattr(recovery, "live_jobs", finishing_meanwhile)
    assert run_pass(redis, queues, storage)["requeued"] == 0
    assert queues.attribute.job_ids == []


def test_images_covered_by_a_waiting_batch_are_left_alone(client, service_env):
    from common.jobs import enqueue_embed_batches
    files = [("images", (f"{i}.jpg", photo_bytes("dog", i), "image/jpeg")) for i in (0, 1, 2)]
    work = client.post("/sources", files=files, data={"title": "dog", "rights_holder": "s"}).json()
    ids = [image["id"] for image in work["images"]]
    redis, queues, storage = setup_pass(service_env)
    age_rows(SourceImage, SourceImage.created_at)
    enqueue_embed_batches(queues.embed, ids[:2], 2)  # one live job holds two of the three images
    assert run_pass(redis, queues, storage)["embeds"] == 1
    assert sorted(queues.embed.job_ids) == sorted([embed_job_id(ids[:2]), embed_job_id(ids[2:])])


def test_one_recovery_pass_at_a_time(service_env):
    from common.recovery import RecoveryLock
    redis = Redis.from_url(get_settings().redis_url)
    with RecoveryLock(redis, "q", "a", ttl_s=5) as first:
        with RecoveryLock(redis, "q", "b", ttl_s=5) as second:
            assert first and not second
    with RecoveryLock(redis, "q", "b", ttl_s=5) as after:
        assert after

"""Re-derive queue state from the database, the source of truth: after a worker is killed or Redis
restarts, jobs and embeddings that were in flight are re-enqueued (or failed with a reason)."""
import logging
from datetime import datetime, timedelta, timezone

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db.models import AttributionJob, ImageState, JobStatus, SourceImage, Work
from common.jobs import enqueue_attribution, enqueue_embed_work, heartbeat_key

log = logging.getLogger(__name__)
_ALIVE = {"queued", "started", "deferred", "scheduled"}


def rq_job_alive(redis: Redis, queue_name: str, rq_job_id: str) -> bool:
    """Queued or running somewhere. A job "started" by a worker that was killed stays "started" in RQ
    until its timeout, long after its worker is gone: it counts as alive only while its worker beats."""
    try:
        job = Job.fetch(rq_job_id, connection=redis)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=True)
    if status == "started":
        return worker_alive(redis, queue_name, job.worker_name)
    return status in _ALIVE


def worker_alive(redis: Redis, queue_name: str, worker_name: str | None) -> bool:
    return bool(worker_name) and bool(redis.exists(heartbeat_key(queue_name, worker_name)))


def recover(session: Session, redis: Redis, queue: Queue, *, max_attempts: int,
            grace_s: float = 20.0) -> dict[str, int]:
    """One pass; safe to run from several workers at once (enqueueing by row id is idempotent)."""
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=grace_s)
    counts = {"orphaned_running": _recover_running(session, redis, queue, max_attempts),
              "requeued": _requeue_lost(session, redis, queue, cutoff),
              "embeds": _reembed_pending(session, redis, queue, cutoff)}
    session.commit()
    if any(counts.values()):
        log.info("recovery: %s", counts)
    return counts


def _recover_running(session: Session, redis: Redis, queue: Queue, max_attempts: int) -> int:
    """A job whose worker stopped beating died with it: retry it, or fail it with the reason."""
    jobs = session.scalars(select(AttributionJob).where(AttributionJob.status == JobStatus.running))
    recovered = 0
    for job in jobs:
        if worker_alive(redis, queue.name, job.worker):
            continue
        recovered += 1
        if job.attempts >= max_attempts:
            job.status, job.finished_at = JobStatus.failed, datetime.now(timezone.utc)
            job.error = f"worker {job.worker} stopped during the job, {job.attempts} attempts used"
        else:
            job.status, job.error = JobStatus.queued, f"worker {job.worker} stopped during the job; retried"
            session.flush()
            enqueue_attribution(queue, str(job.id))
    return recovered


def _requeue_lost(session: Session, redis: Redis, queue: Queue, cutoff: datetime) -> int:
    jobs = session.scalars(select(AttributionJob).where(
        AttributionJob.status == JobStatus.queued, AttributionJob.created_at < cutoff))
    lost = [job for job in jobs if not rq_job_alive(redis, queue.name, f"attr-{job.id}")]
    for job in lost:
        enqueue_attribution(queue, str(job.id))
    return len(lost)


def _reembed_pending(session: Session, redis: Redis, queue: Queue, cutoff: datetime) -> int:
    work_ids = set(session.scalars(select(SourceImage.work_id).join(Work).where(
        Work.deleted_at.is_(None), SourceImage.state == ImageState.pending, SourceImage.created_at < cutoff)))
    lost = [w for w in work_ids if not rq_job_alive(redis, queue.name, f"embed-{w}")]
    for work_id in lost:
        enqueue_embed_work(queue, str(work_id))
    return len(lost)

"""Re-derive queue state from the database, the source of truth: after a worker is killed or Redis
restarts, jobs and embeddings that were in flight are re-enqueued (or failed with a reason)."""
import logging
from datetime import datetime, timedelta, timezone

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from common import outbox
from common.db.models import AttributionJob, ImageState, JobStatus, SourceImage, Work
from common.events import publish_job_finished
from common.jobs import enqueue_attribution, enqueue_embed_work, heartbeat_key
from common.storage import Storage

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


def recover(session: Session, redis: Redis, queue: Queue, storage: Storage, *, max_attempts: int,
            grace_s: float = 20.0) -> dict[str, int]:
    """One pass. Several workers may run it at once: a job is taken from a dead worker by a
    compare-and-set update, and enqueueing by row id is idempotent."""
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=grace_s)
    counts = {"orphaned_running": _recover_running(session, redis, queue, storage, max_attempts),
              "requeued": _requeue_lost(session, redis, queue, cutoff),
              "embeds": _reembed_pending(session, redis, queue, cutoff)}
    session.commit()
    if any(counts.values()):
        log.info("recovery: %s", counts)
    return counts


def _recover_running(session: Session, redis: Redis, queue: Queue, storage: Storage,
                     max_attempts: int) -> int:
    """A job whose worker stopped beating died with it: retry it, or fail it with the reason."""
    running = session.execute(select(AttributionJob.id, AttributionJob.worker, AttributionJob.attempts,
                                     AttributionJob.storage_key, AttributionJob.training_use)
                              .where(AttributionJob.status == JobStatus.running)).all()
    recovered = 0
    for job_id, worker, attempts, storage_key, training_use in running:
        if worker_alive(redis, queue.name, worker):
            continue
        final = attempts >= max_attempts
        if not _take_from_dead_worker(session, job_id, worker, attempts, final):
            continue  # another worker's pass, or the job itself, changed the row first
        recovered += 1
        if final:
            publish_job_finished(redis, job_id, JobStatus.failed)
        if final and not training_use:
            storage.delete(storage_key)
        elif not final:
            enqueue_attribution(queue, str(job_id))
    return recovered


def _take_from_dead_worker(session: Session, job_id, worker: str | None, attempts: int, final: bool) -> bool:
    """Compare-and-set: only if the row is still `running` on that worker with those attempts."""
    values = ({"status": JobStatus.failed, "finished_at": datetime.now(timezone.utc),
               "error": f"worker {worker} stopped during the job, {attempts} attempts used"} if final else
              {"status": JobStatus.queued, "error": f"worker {worker} stopped during the job; retried"})
    result = session.execute(update(AttributionJob).where(
        AttributionJob.id == job_id, AttributionJob.status == JobStatus.running,
        AttributionJob.worker == worker, AttributionJob.attempts == attempts).values(**values))
    if final and result.rowcount == 1:  # giving up finishes the job: its webhook row commits with it
        outbox.add_job_finished(session, job=session.get(AttributionJob, job_id, populate_existing=True))
    session.commit()
    return result.rowcount == 1


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

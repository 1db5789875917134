"""Re-derive queue state from the database, the source of truth: after a worker is killed or Redis
restarts, jobs and embeddings that were in flight are re-enqueued (or failed with a reason).

Cheap with a large backlog: one worker at a time runs a pass (a Redis lock); Redis is read in a few
pipelined round trips (the queues' job lists in one atomic snapshot, then the running jobs), never one
lookup per row; only rows older than the grace period are looked at; and a row is re-enqueued only if
it is still unfinished *after* Redis was read, so a job that finished meanwhile is never run twice."""
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.utils import parse_composite_key
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from common import imports, outbox
from common.db.models import AttributionJob, ImageState, JobStatus, SourceImage, Work
from common.events import publish_import_finished, publish_job_finished
from common.jobs import Queues, enqueue_attribution, enqueue_embed_batches, heartbeat_key
from common.storage import Storage

log = logging.getLogger(__name__)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class RecoveryLock:
    """At most one recovery pass at a time across all workers. The TTL frees the lock of a worker
    killed mid-pass; release only deletes the lock if it is still ours."""

    def __init__(self, redis: Redis, base: str, owner: str, ttl_s: float):
        self.redis, self.key, self.owner, self.ttl_ms = redis, f"attrib:recovery-lock:{base}", owner, int(ttl_s * 1000)

    def __enter__(self) -> bool:
        self.held = bool(self.redis.set(self.key, self.owner, nx=True, px=self.ttl_ms))
        return self.held

    def __exit__(self, *exc) -> None:
        if self.held:
            self.redis.eval(_RELEASE, 1, self.key, self.owner)


def live_jobs(redis: Redis, queue: Queue, base: str) -> set[str]:
    """Two or three pipelined round trips, whatever the backlog: the waiting list, the list of jobs in
    transit and the running registry are read in one MULTI (a consistent snapshot), then the running
    jobs' workers' heartbeats are checked together."""
    pipe = redis.pipeline(transaction=True)
    pipe.lrange(queue.key, 0, -1)
    pipe.lrange(queue.intermediate_queue_key, 0, -1)
    pipe.zrange(queue.started_job_registry.key, 0, -1)
    waiting, moving, started = pipe.execute()
    alive = {_text(i) for i in waiting} | {_text(i) for i in moving}
    running = [parse_composite_key(_text(entry))[0] for entry in started]
    return alive | running_on_live_workers(redis, running, base)


def running_on_live_workers(redis: Redis, job_ids: list[str], base: str) -> set[str]:
    """A job "started" by a worker that was killed stays started in RQ until its timeout: it counts as
    alive only while its worker beats."""
    jobs = [job for job in Job.fetch_many(job_ids, connection=redis) if job is not None]
    beating = workers_alive(redis, base, {job.worker_name for job in jobs if job.worker_name})
    return {job.id for job in jobs if job.worker_name in beating}


def workers_alive(redis: Redis, base: str, names: Iterable[str]) -> set[str]:
    names = sorted(set(names))
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.exists(heartbeat_key(base, name))
    return {name for name, exists in zip(names, pipe.execute()) if exists}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def recover(session: Session, redis: Redis, queues: Queues, storage: Storage, *, max_attempts: int,
            grace_s: float = 20.0, images_per_job: int = 64) -> dict[str, int]:
    """One pass (callers hold a RecoveryLock). Taking a job from a dead worker is still a
    compare-and-set, and enqueueing is idempotent by job id, so an overlapping pass does no harm."""
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=grace_s)
    counts = {"orphaned_running": _recover_running(session, redis, queues, storage, max_attempts),
              "requeued": _requeue_lost(session, redis, queues, cutoff),
              "embeds": _reembed_pending(session, redis, queues, cutoff, images_per_job)}
    session.commit()
    counts["imports_finished"] = _finish_imports(session, redis)
    if any(counts.values()):
        log.info("recovery: %s", counts)
    return counts


def _finish_imports(session: Session, redis: Redis) -> int:
    """Bulk imports completed other than by an embedding job (an image failed at a worker's start, the
    last pending work deleted): finished here, with their webhook row (common.imports)."""
    finished = imports.finish_ready_imports(session)
    for import_id in finished:
        publish_import_finished(redis, import_id)
    return len(finished)


def _recover_running(session: Session, redis: Redis, queues: Queues, storage: Storage,
                     max_attempts: int) -> int:
    """A job whose worker stopped beating died with it: retry it, or fail it with the reason."""
    running = session.execute(select(AttributionJob.id, AttributionJob.worker, AttributionJob.attempts,
                                     AttributionJob.storage_key, AttributionJob.training_use)
                              .where(AttributionJob.status == JobStatus.running)).all()
    beating = workers_alive(redis, queues.base, {row.worker for row in running if row.worker})
    recovered = 0
    for job_id, worker, attempts, storage_key, training_use in running:
        if worker in beating:
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
            enqueue_attribution(queues.attribute, str(job_id))
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


def _requeue_lost(session: Session, redis: Redis, queues: Queues, cutoff: datetime) -> int:
    suspects = set(session.scalars(select(AttributionJob.id).where(
        AttributionJob.status == JobStatus.queued, AttributionJob.created_at < cutoff)))
    if not suspects:
        return 0
    alive = live_jobs(redis, queues.attribute, queues.base)
    missing = [job_id for job_id in suspects if f"attr-{job_id}" not in alive]
    lost = _still(session, AttributionJob.id, AttributionJob.status == JobStatus.queued, missing)
    for job_id in sorted(lost, key=str):
        enqueue_attribution(queues.attribute, str(job_id))
    return len(lost)


def _reembed_pending(session: Session, redis: Redis, queues: Queues, cutoff: datetime, per_job: int) -> int:
    suspects = set(session.scalars(select(SourceImage.id).join(Work).where(
        Work.deleted_at.is_(None), SourceImage.state == ImageState.pending, SourceImage.created_at < cutoff)))
    if not suspects:
        return 0
    covered = images_covered(redis, live_jobs(redis, queues.embed, queues.base), suspects, session)
    lost = _still(session, SourceImage.id, SourceImage.state == ImageState.pending, suspects - covered)
    enqueue_embed_batches(queues.embed, sorted(lost), per_job)
    return len(lost)


def images_covered(redis: Redis, job_ids: set[str], suspects: set[int], session: Session) -> set[int]:
    """Image ids that a live embedding job will embed (its arguments, fetched in one pipeline)."""
    covered: set[int] = set()
    works: set[uuid.UUID] = set()
    for job in Job.fetch_many(sorted(job_ids), connection=redis):
        if job is None or not job.args:
            continue
        if isinstance(job.args[0], str):  # a job from before batching: embed_work(work_id)
            works.add(uuid.UUID(job.args[0]))
        else:
            covered.update(int(i) for i in job.args[0])
    if works:
        covered.update(session.scalars(select(SourceImage.id).where(SourceImage.work_id.in_(works))))
    return covered & suspects


def _still(session: Session, column, condition, ids) -> list:
    """Of `ids`, those whose row still meets `condition` now (after Redis was read). The commit first
    ends the read transaction (SQLite's WAL readers see a snapshot from its start)."""
    session.commit()
    ids = list(ids)
    found = []
    for start in range(0, len(ids), 5000):
        found.extend(session.scalars(select(column).where(column.in_(ids[start:start + 5000]), condition)))
    return found

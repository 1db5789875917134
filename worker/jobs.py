"""Jobs, enqueued by dotted name (common.jobs). They receive ids, never image bytes: the database row
holds the state, so a retried or duplicated job is safe."""
import logging
import time
import uuid
from datetime import datetime, timezone
from functools import lru_cache

from redis import Redis
from redis.exceptions import RedisError
from rq import get_current_job
from sqlalchemy import delete
from sqlalchemy.orm import Session

from common import imports, outbox
from common.db import crud
from common.db.models import AttributionJob, JobStatus, Match
from common.db.session import new_session
from common.events import publish_import_finished, publish_job_finished
from common.images import ImageRejected, decode_rgb
from common.jobs import Queues, backlog, enqueue_embedding, get_queues
from common.storage import get_storage
from common.thumbnails import store_query_thumbnail
from core.ranking import rank_works
from worker import batch_embed
from worker import runtime as runtime_module
from worker.stats import STATS

log = logging.getLogger(__name__)


def _current_runtime(session: Session) -> runtime_module.Runtime:
    runtime = runtime_module.get_runtime().follow_active_pair(session)
    runtime_module.set_runtime(runtime)
    return runtime


def embed_images(image_ids: list[int]) -> int:
    """Embed these registered images (those still pending) with the active encoder, batch by batch;
    yields to waiting attributions between batches (worker.batch_embed). Returns how many it embedded."""
    started = time.monotonic()
    with new_session() as session:
        runtime = _current_runtime(session)
        settings, device = runtime.settings, runtime.device
        _fault_delay(settings.fault_job_delay_s)
        outcome = batch_embed.embed_pending(
            session, runtime.encoder, runtime.feeder,
            get_storage(settings), list(image_ids), batch_embed.forward_batch_size(settings, device),
            should_yield=_attributions_waiting)
        _drop_vectors_of_works_deleted_meanwhile(session, outcome.work_ids)
        _finish_imports(session, image_ids, settings)
        if outcome.remaining:  # it yielded: the attribution it yielded to syncs the index first thing
            enqueue_embedding(_queues(settings).embed, outcome.remaining, at_front=True)
        else:
            runtime.sync(session)
        STATS.observe("embed", time.monotonic() - started, outcome.embedded)
        return outcome.embedded


def _finish_imports(session: Session, image_ids, settings) -> None:
    """After the vectors committed: a bulk import whose last pending image this job embedded (or
    failed) finishes now, its webhook row committed with it (common.imports); then deliverers wake."""
    for import_id in imports.finish_imports_of_images(session, image_ids):
        log.info("bulk import %s finished", import_id)
        publish_import_finished(_redis(settings.redis_url), import_id)


def embed_work(work_id: str) -> int:
    """A job enqueued before embedding was batched: embed the work's pending images."""
    with new_session() as session:
        ids = [image.id for image in crud.pending_images(session, work_id=uuid.UUID(work_id))]
    return embed_images(ids)


# Set by `python -m worker`: only a worker that also serves the attribution queue yields to it.
SERVES_ATTRIBUTION = True


def _attributions_waiting() -> bool:
    if not SERVES_ATTRIBUTION:
        return False
    try:
        return backlog(_queues(runtime_module.get_runtime().settings).attribute) > 0
    except RedisError:
        return False


@lru_cache
def _redis(url: str) -> Redis:
    return Redis.from_url(url)


def _queues(settings) -> Queues:
    return get_queues(_redis(settings.redis_url), settings.queue_name)


def _drop_vectors_of_works_deleted_meanwhile(session: Session, work_ids: set[uuid.UUID]) -> None:
    """DELETE /sources may commit while we embed; its vector purge then missed what we just wrote.
    One query for the job's works (a job of 64 images names ~32 of them)."""
    for work_id in work_ids - crud.live_work_ids(session, work_ids=work_ids):
        crud.delete_vectors_of_work(session, work_id=work_id)
        session.commit()


def attribute_image(job_id: str) -> str:
    """Embed the query, search the index, group image hits into ranked works, store the matches."""
    with new_session() as session:
        job = session.get(AttributionJob, uuid.UUID(job_id))
        if job is None or job.status in (JobStatus.done, JobStatus.failed):
            return "skipped"
        _mark_running(session, job)
        _fault_delay(runtime_module.get_runtime().settings.fault_job_delay_s)
        try:
            _attribute(session, job)
        except Exception as exc:
            session.rollback()
            _record_failure(session, job_id, exc)
            raise
        _announce(job_id, JobStatus.done)
        _forget_query_image(job)
        return "done"


def _fault_delay(seconds: float) -> None:
    # Test-only (settings.fault_job_delay_s): widen the window in which fault tests kill a worker mid-job.
    if seconds > 0:
        time.sleep(seconds)


def _mark_running(session: Session, job: AttributionJob) -> None:
    rq_job = get_current_job()
    job.status, job.attempts = JobStatus.running, job.attempts + 1
    job.started_at = datetime.now(timezone.utc)
    job.worker = rq_job.worker_name if rq_job else None
    session.commit()


def _attribute(session: Session, job: AttributionJob) -> None:
    runtime = _current_runtime(session)
    runtime.sync(session)
    settings, encoder, store = runtime.settings, runtime.encoder, runtime.store
    storage = get_storage(settings)
    image = decode_rgb(storage.get(job.storage_key))
    query = encoder.embed([image], role="query")
    ids, scores = store.search(query, min(job.top_k * settings.image_hits_per_work, 1000))
    ids, scores = ids[0], scores[0]
    work_of_image = crud.live_work_of_images(session, image_ids=ids.tolist())
    ranked, unattributed = rank_works(ids, scores, work_of_image, job.top_k, runtime.calibration)
    session.execute(delete(Match).where(Match.job_id == job.id))  # a retry replaces, never duplicates
    session.add_all(Match(job_id=job.id, rank=r, work_id=w.work_id, score=w.score, share=w.share,
                          best_image_id=w.best_image_id) for r, w in enumerate(ranked, start=1))
    job.encoder_id, job.index_id, job.index_size = encoder.encoder_id, store.index_id, store.count()
    job.pair_id, job.calibration = runtime.pair_id, runtime.calibration.applied()
    job.query_vector = query[0].astype("<f4").tobytes()  # for reviewers' verdicts (design §8)
    store_query_thumbnail(storage, job.id, image)  # evidence beside the result, before it commits
    job.unattributed, job.status, job.error = unattributed, JobStatus.done, None
    job.finished_at = datetime.now(timezone.utc)
    outbox.add_job_finished(session, job=job)  # the webhook row commits with the result, or not at all
    session.commit()
    STATS.observe("attribute", (job.finished_at - job.created_at).total_seconds())


def _record_failure(session: Session, job_id: str, exc: Exception) -> None:
    """Give the row the reason; it stays queued while retries remain, so no job is left running."""
    job = session.get(AttributionJob, uuid.UUID(job_id))
    # A refused image fails the same way every time: no retry (and never a crashed worker).
    refused = isinstance(exc, ImageRejected)
    final = refused or job.attempts >= runtime_module.get_runtime().settings.job_max_attempts
    job.status = JobStatus.failed if final else JobStatus.queued
    job.error = f"image refused ({exc.reason}): {exc.detail}" if refused else f"{type(exc).__name__}: {exc}"
    if final:
        job.finished_at = datetime.now(timezone.utc)
        outbox.add_job_finished(session, job=job)
    session.commit()
    if final:
        _announce(job_id, JobStatus.failed)
        _forget_query_image(job)
    log.warning("attribution %s attempt %d failed: %s", job_id, job.attempts, exc)


def _announce(job_id: str, status: JobStatus) -> None:
    """The job-finished event (common/events.py), after the row is committed."""
    rq_job = get_current_job()
    redis = rq_job.connection if rq_job else _redis(runtime_module.get_runtime().settings.redis_url)
    publish_job_finished(redis, job_id, status)


def _forget_query_image(job: AttributionJob) -> None:
    """A query image (one file per job) is deleted once the job ends, unless kept (opt-in) for training."""
    if not job.training_use:
        get_storage(runtime_module.get_runtime().settings).delete(job.storage_key)

"""Retention: finished attribution jobs older than `ATTRIB_JOB_RETENTION_DAYS` are deleted with their
matches, webhook deliveries and any query file still kept (opt-in training images included). Workers
run a sweep every `ATTRIB_RETENTION_SWEEP_INTERVAL_S`; `attrib sweep` runs one now. Several sweepers
at once are harmless: deletes are idempotent."""
import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from common.audit import record
from common.db.models import AttributionJob, JobStatus, Match, Verdict, WebhookDelivery
from common.storage import Storage
from common.thumbnails import query_thumbnail_key

log = logging.getLogger(__name__)
_BATCH = 500


def sweep_expired_jobs(session: Session, storage: Storage, *, retention_days: float,
                       now: datetime | None = None) -> int:
    """Delete expired finished jobs in batches; returns how many. 0 days means keep forever."""
    if retention_days <= 0:
        return 0
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=retention_days)
    total = 0
    while batch := _expired(session, cutoff):
        ids = [job_id for job_id, _ in batch]
        # Children first: SQLite enforces ON DELETE CASCADE only with its pragma, so do not rely on it.
        session.execute(delete(Match).where(Match.job_id.in_(ids)))
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.job_id.in_(ids)))
        # Verdicts are labels: they outlive their job (they carry their own copy of the query embedding).
        session.execute(update(Verdict).where(Verdict.job_id.in_(ids)).values(job_id=None))
        session.execute(delete(AttributionJob).where(AttributionJob.id.in_(ids)))
        session.commit()
        for job_id, storage_key in batch:
            storage.delete(storage_key)  # after commit: a rolled-back delete never loses a file
            storage.delete(query_thumbnail_key(job_id))
        total += len(batch)
    if total:
        record(session, action="retention.sweep", actor="system",
               detail={"jobs_deleted": total, "cutoff": cutoff.isoformat()})
        session.commit()
        log.info("retention: deleted %d jobs finished before %s", total, cutoff)
    return total


def _expired(session: Session, cutoff: datetime) -> list[tuple]:
    return list(session.execute(
        select(AttributionJob.id, AttributionJob.storage_key)
        .where(AttributionJob.status.in_([JobStatus.done, JobStatus.failed]),
               # a job failed at submit time (queue down) has no finished_at: its creation counts
               or_(AttributionJob.finished_at < cutoff,
                   and_(AttributionJob.finished_at.is_(None), AttributionJob.created_at < cutoff)))
        .limit(_BATCH)).all())

"""Database reads and writes for evidence and reviewers' verdicts (keyword-only arguments)."""
import uuid

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from common.db.models import AttributionJob, Match, SourceImage, Verdict, VerdictKind, Work


def get_live_image(session: Session, *, work_id: uuid.UUID, image_id: int) -> SourceImage | None:
    """The image if it belongs to this live work (a deleted work's images are gone for every reader)."""
    image = session.get(SourceImage, image_id)
    if image is None or image.work_id != work_id or image.work.deleted_at is not None:
        return None
    return image


def image_matched_for_client(session: Session, *, client_key_id: uuid.UUID, image_id: int) -> bool:
    """True when one of this key's own jobs returned the image as a match's best image."""
    return bool(session.scalar(select(exists().where(
        Match.best_image_id == image_id, Match.job_id == AttributionJob.id,
        AttributionJob.client_key_id == client_key_id))))


def image_matched_in_any_job(session: Session, *, image_id: int) -> bool:
    return bool(session.scalar(select(exists().where(Match.best_image_id == image_id))))


def find_verdict(session: Session, *, job_id: uuid.UUID, work_id: uuid.UUID | None,
                 reviewer_key_id: uuid.UUID) -> Verdict | None:
    work_clause = Verdict.work_id.is_(None) if work_id is None else Verdict.work_id == work_id
    return session.scalar(select(Verdict).where(
        Verdict.job_id == job_id, work_clause, Verdict.reviewer_key_id == reviewer_key_id))


def record_verdict(session: Session, *, job: AttributionJob, work_id: uuid.UUID | None, verdict: VerdictKind,
                   reviewer_key_id: uuid.UUID, query_storage_key: str | None) -> Verdict:
    """One verdict per (job, work, reviewer): giving another replaces the earlier one (a reviewer may
    change their mind), and copies the job's query embedding so the label outlives the job."""
    row = find_verdict(session, job_id=job.id, work_id=work_id, reviewer_key_id=reviewer_key_id)
    if row is None:
        row = Verdict(job_id=job.id, work_id=work_id, reviewer_key_id=reviewer_key_id)
        session.add(row)
    row.verdict, row.query_sha256 = verdict, job.query_sha256
    row.encoder_id, row.query_vector = job.encoder_id, job.query_vector
    row.query_storage_key = query_storage_key
    session.flush()
    return row


def list_verdicts_of_job(session: Session, *, job_id: uuid.UUID) -> list[Verdict]:
    return list(session.scalars(select(Verdict).where(Verdict.job_id == job_id).order_by(Verdict.id)))


def list_verdicts(session: Session, *, encoder_id: str | None = None) -> list[Verdict]:
    """Every verdict on a live (or no) work, oldest first; the trainer's input."""
    query = select(Verdict).outerjoin(Work, Verdict.work_id == Work.id).where(
        (Verdict.work_id.is_(None)) | Work.deleted_at.is_(None))
    if encoder_id is not None:
        query = query.where(Verdict.encoder_id == encoder_id)
    return list(session.scalars(query.order_by(Verdict.id)))

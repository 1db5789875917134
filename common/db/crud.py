"""Database operations shared by the API, the worker and the trainer (keyword-only arguments)."""
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, selectinload

from common.db.models import (
    AttributionJob, ChangelogHead, Embedding, ImageState, JobStatus, Match, ModelPair, SourceImage,
    VectorChange, Work,
)


def find_live_images_by_hash(session: Session, *, rights_holder: str,
                             hashes: Iterable[str]) -> dict[str, SourceImage]:
    """Images with these hashes in the rights holder's live works, keyed by hash."""
    rows = session.scalars(
        select(SourceImage).join(Work)
        .where(Work.rights_holder == rights_holder, Work.deleted_at.is_(None),
               SourceImage.content_sha256.in_(list(hashes))))
    return {image.content_sha256: image for image in rows}


def create_work(session: Session, *, work_id: uuid.UUID, title: str, rights_holder: str,
                external_ref: str | None, licence: str | None, images: list[SourceImage],
                import_item_id: str | None = None, import_id: uuid.UUID | None = None) -> Work:
    work = Work(id=work_id, title=title, rights_holder=rights_holder, external_ref=external_ref, licence=licence,
                images=images, import_item_id=import_item_id, import_id=import_id)
    session.add(work)
    session.flush()
    return work


def get_work(session: Session, *, work_id: uuid.UUID) -> Work | None:
    """A live work with its images, or None (deleted works are gone for every reader)."""
    work = session.get(Work, work_id, options=[selectinload(Work.images)])
    return None if work is None or work.deleted_at is not None else work


def live_work_ids(session: Session, *, work_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of these works that exist and are not deleted (`get_work` for many, without the images)."""
    return set(session.scalars(select(Work.id).where(Work.id.in_(list(work_ids)), Work.deleted_at.is_(None))))


def delete_work(session: Session, *, work: Work) -> list[str]:
    """Soft-delete the work (past results keep their rows but hide it) and drop its vectors at once.
    Returns its files' storage keys (stored per work), for the caller to remove after commit."""
    work.deleted_at = datetime.now(timezone.utc)
    for image in work.images:
        image.live = False  # its bytes may be registered again (uq_source_images_live_hash)
    delete_vectors_of_work(session, work_id=work.id)
    return sorted({image.storage_key for image in work.images})


def delete_vectors_of_work(session: Session, *, work_id: uuid.UUID) -> None:
    """Drop the work's vectors and log a delete per image in the same transaction (workers replay it)."""
    image_ids = list(session.scalars(select(SourceImage.id).where(SourceImage.work_id == work_id)))
    session.execute(delete(Embedding).where(Embedding.image_id.in_(image_ids)))
    record_vector_changes(session, op="delete", image_ids=image_ids, encoder_id=None)


def record_vector_changes(session: Session, *, op: str, image_ids: list[int], encoder_id: str | None) -> None:
    """Append to the change log (docs/design.md §2). Call inside the transaction that changes the vectors:
    the counter's row lock, held to commit, makes sequence order commit order, so a reader that advances
    to the largest seq it saw never skips a row committed later."""
    if not image_ids:
        return
    last = session.scalar(update(ChangelogHead).where(ChangelogHead.id == 1)
                          .values(seq=ChangelogHead.seq + len(image_ids)).returning(ChangelogHead.seq))
    if last is None:  # a schema made without the migration's seed row
        session.add(ChangelogHead(id=1, seq=len(image_ids)))
        session.flush()
        last = len(image_ids)
    first = last - len(image_ids) + 1
    session.execute(insert(VectorChange), [
        {"seq": first + i, "op": op, "image_id": int(image_id), "encoder_id": encoder_id}
        for i, image_id in enumerate(image_ids)])


def live_work_of_images(session: Session, *, image_ids: Iterable[int]) -> dict[int, uuid.UUID]:
    """image id -> work id, for images whose work is live (deleted works vanish immediately)."""
    rows = session.execute(
        select(SourceImage.id, SourceImage.work_id).join(Work)
        .where(SourceImage.id.in_(list(image_ids)), Work.deleted_at.is_(None)))
    return {image_id: work_id for image_id, work_id in rows}


def create_job(session: Session, *, job_id: uuid.UUID, query_sha256: str, storage_key: str, top_k: int,
               training_use: bool, client_key_id: uuid.UUID | None = None,
               callback_url: str | None = None) -> AttributionJob:
    job = AttributionJob(id=job_id, query_sha256=query_sha256, storage_key=storage_key, top_k=top_k,
                         training_use=training_use, status=JobStatus.queued, client_key_id=client_key_id,
                         callback_url=callback_url)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, *, job_id: uuid.UUID) -> AttributionJob | None:
    return session.get(AttributionJob, job_id,
                       options=[selectinload(AttributionJob.matches).selectinload(Match.work),
                                selectinload(AttributionJob.deliveries)])


def get_active_pair(session: Session) -> ModelPair | None:
    return session.scalar(select(ModelPair).where(ModelPair.active.is_(True)))


def pending_images(session: Session, *, work_id: uuid.UUID | None = None) -> list[SourceImage]:
    query = select(SourceImage).join(Work).where(
        Work.deleted_at.is_(None), SourceImage.state == ImageState.pending)
    if work_id is not None:
        query = query.where(SourceImage.work_id == work_id)
    return list(session.scalars(query.order_by(SourceImage.id)))

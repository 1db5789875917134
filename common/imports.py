"""Bulk imports followed to the end: an import (one `POST /sources/bulk`) is finished when every image
it created is embedded (searchable) or failed, and then, if it named a `callback_url`, exactly one
`registration.finished` webhook goes out through the outbox (docs/webhooks.md).

Life of an import row (`bulk_imports`):
- `open_import` (API, before the first item): `registering`, committed, so the works the request
  creates can name it (`works.import_id`). Embedding starts while the request still runs.
- `close_import` (API, after the last item): records the item counts, moves to `embedding`, commits,
  then tries `finish_if_done` (the workers may already have embedded everything).
- `finish_if_done` is called by whoever may have made the import complete: the worker after each
  embedding job commits (`finish_imports_of_images`), the API after closing, and the recovery pass
  (`finish_ready_imports`: images failed or works deleted elsewhere). One compare-and-set UPDATE moves
  `embedding` -> `finished` only if no image of its live works is pending, and the winner adds the
  outbox row in that same transaction, as a finished attribution job does (design.md §6): the
  callback commits with the finish or not at all, and only one caller can win.

Why a check after commit, not inside the embedding transaction: two workers finishing the last two
images of one import at once would each see the other's image still pending and neither would finish
it. Each checks after its own commit instead, so whichever checks last sees both."""
import uuid
from datetime import datetime, timezone

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from common import outbox
from common.db.models import BulkImport, ImageState, ImportStatus, Scope, SourceImage, Work

# The webhook lists at most this many failed images (the counts are always complete).
MAX_FAILED_LISTED = 100


def open_import(session: Session, *, key_id: uuid.UUID | None, rights_holder: str | None,
                callback_url: str | None) -> uuid.UUID:
    imported = BulkImport(id=uuid.uuid4(), key_id=key_id, rights_holder=rights_holder, callback_url=callback_url,
                          status=ImportStatus.registering)
    session.add(imported)
    session.commit()
    return imported.id


def close_import(session: Session, import_id: uuid.UUID, counts: dict[str, int]) -> bool:
    """Every item has answered: record the counts and let the import finish. True if it finished now."""
    session.execute(update(BulkImport).where(BulkImport.id == import_id).values(
        status=ImportStatus.embedding, created_items=counts.get("created", 0),
        duplicate_items=counts.get("duplicate", 0), refused_items=counts.get("refused", 0))
        .execution_options(synchronize_session=False))
    session.commit()
    return finish_if_done(session, import_id)


def _pending_images(import_id: uuid.UUID):
    return select(SourceImage.id).join(Work).where(Work.import_id == import_id, Work.deleted_at.is_(None),
                                                   SourceImage.state == ImageState.pending)


def finish_if_done(session: Session, import_id: uuid.UUID) -> bool:
    """Compare-and-set, then the outbox row, in one transaction; True for the one caller that finished it.
    On PostgreSQL a concurrent UPDATE of the row waits for the winner and then sees `finished`."""
    result = session.execute(update(BulkImport).where(
        BulkImport.id == import_id, BulkImport.status == ImportStatus.embedding,
        ~_pending_images(import_id).exists())
        .values(status=ImportStatus.finished, finished_at=datetime.now(timezone.utc))
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        session.rollback()
        return False
    imported = session.get(BulkImport, import_id, populate_existing=True)
    if imported.callback_url:
        outbox.add_event(session, key_id=imported.key_id, url=imported.callback_url,
                         event=outbox.REGISTRATION_FINISHED, payload=payload(session, imported),
                         import_id=imported.id)
    session.commit()
    return True


def finish_imports_of_images(session: Session, image_ids) -> list[uuid.UUID]:
    """After an embedding job committed: finish the imports these images belong to, if now complete.
    All the job's images count, not only those it embedded: another path (a worker's start-up catch-up)
    may have embedded them first, and then this job is the one that notices the import is complete."""
    image_ids = list(image_ids)
    if not image_ids:
        return []
    candidates = session.scalars(
        select(BulkImport.id).distinct().join(Work, Work.import_id == BulkImport.id).join(SourceImage)
        .where(SourceImage.id.in_(image_ids), BulkImport.status == ImportStatus.embedding)).all()
    session.commit()  # end the read: each check below must see what committed since
    return [import_id for import_id in candidates if finish_if_done(session, import_id)]


def finish_ready_imports(session: Session) -> list[uuid.UUID]:
    """The recovery pass's safety net: imports completed by something other than an embedding job (an
    image failed at worker start, the last pending work deleted). Few rows: only unfinished imports."""
    candidates = session.scalars(select(BulkImport.id).where(BulkImport.status == ImportStatus.embedding)).all()
    session.commit()
    return [import_id for import_id in candidates if finish_if_done(session, import_id)]


def progress(session: Session, import_id: uuid.UUID) -> dict[str, int]:
    """Images created by the import: total, and how many are pending, embedded, failed, or belong to a
    work deleted since (those never count as pending)."""
    counts = {"total": 0, "pending": 0, "embedded": 0, "failed": 0, "deleted": 0}
    rows = session.execute(select(SourceImage.state, Work.deleted_at.is_(None), func.count())
                           .join(Work).where(Work.import_id == import_id)
                           .group_by(SourceImage.state, Work.deleted_at.is_(None))).all()
    for state, live, n in rows:
        counts["total"] += n
        counts[ImageState(state).value if live else "deleted"] += n
    return counts


def failed_images(session: Session, import_id: uuid.UUID, limit: int = MAX_FAILED_LISTED) -> list[dict]:
    rows = session.execute(select(SourceImage.id, SourceImage.work_id, Work.import_item_id, SourceImage.error)
                           .join(Work).where(Work.import_id == import_id, Work.deleted_at.is_(None),
                                             SourceImage.state == ImageState.failed)
                           .order_by(SourceImage.id).limit(limit)).all()
    return [{"image_id": image_id, "work_id": str(work_id), "item_id": item_id, "error": error}
            for image_id, work_id, item_id, error in rows]


def items(imported: BulkImport) -> dict[str, int]:
    return {"created": imported.created_items, "duplicate": imported.duplicate_items,
            "refused": imported.refused_items}


def payload(session: Session, imported: BulkImport) -> dict:
    """The `registration.finished` body, built once when the import finishes."""
    return {"event": outbox.REGISTRATION_FINISHED, "data": {
        "id": str(imported.id), "status": ImportStatus(imported.status).value, "items": items(imported),
        "images": progress(session, imported.id), "failed": failed_images(session, imported.id),
        "created_at": imported.created_at.isoformat(),
        "finished_at": imported.finished_at.isoformat() if imported.finished_at else None}}


def get_readable(session: Session, import_id: uuid.UUID, *, scope: Scope, rights_holder: str | None,
                 key_id: uuid.UUID | None) -> BulkImport | None:
    """The import if this key may read it: admins read all; a registrar reads its rights holder's
    imports (and its own key's). Another tenant's import reads as missing."""
    imported = session.get(BulkImport, import_id)
    if imported is None or scope == Scope.admin:
        return imported
    if imported.key_id == key_id or (rights_holder is not None and imported.rights_holder == rights_holder):
        return imported
    return None

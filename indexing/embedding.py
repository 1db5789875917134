"""The embedding pipeline, named by its stages: read stored images -> encode -> write vectors."""
import logging

import numpy as np
from PIL import Image
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from common.db import crud
from common.db.models import Embedding, ImageState, SourceImage, Work
from common.images import ImageRejected, check_image, decode_rgb, limits_from
from common.settings import get_settings
from common.storage import Storage
from core.encoder import Encoder

log = logging.getLogger(__name__)


def read_images(storage: Storage, images: list[SourceImage]) -> tuple[list[SourceImage], list[Image.Image]]:
    """Decode each stored image; one that cannot be read is marked failed, not fatal for the batch."""
    ok_rows, decoded = [], []
    for row in images:
        try:
            decoded.append(decode_rgb(storage.get(row.storage_key)))
            ok_rows.append(row)
        except ImageRejected as exc:  # stored before today's limits (e.g. a 2,490,000 x 16 strip)
            row.state, row.error = ImageState.failed, f"image refused ({exc.reason}): {exc.detail}"
            log.warning("image %s failed: %s", row.id, exc.detail)
        except Exception as exc:  # a missing or damaged file must not block the rest
            row.state, row.error = ImageState.failed, f"cannot read stored image: {exc}"
            log.warning("image %s failed: %s", row.id, exc)
    return ok_rows, decoded


def write_vectors(session: Session, rows: list[SourceImage], vectors: np.ndarray, encoder_id: str) -> None:
    """Upsert one vector per image for this encoder (a retried job overwrites its earlier vector), and log
    the upserts in the same transaction so every worker's index follows. One SELECT finds the vectors that
    exist (session.merge would issue one per image), and the new ones are inserted together."""
    ids = [row.id for row in rows]
    _upsert_vectors(session, ids, vectors, encoder_id)
    for row in rows:
        row.state, row.error, row.attempts = ImageState.embedded, None, 0
    session.flush()
    crud.record_vector_changes(session, op="upsert", image_ids=ids, encoder_id=encoder_id)


def write_vectors_of_ids(session: Session, ids: list[int], vectors: np.ndarray, encoder_id: str,
                         failed: dict[int, str]) -> None:
    """`write_vectors` for a session that holds no rows of these images (the embedding job's writer
    thread, worker.batch_embed): states change by UPDATE. The `failed` images (id -> reason) are marked
    failed in the same transaction and leave every index (a vector of an earlier encoder included)."""
    if ids:
        _upsert_vectors(session, ids, vectors, encoder_id)
        session.execute(update(SourceImage).where(SourceImage.id.in_(ids))
                        .values(state=ImageState.embedded, error=None, attempts=0)
                        .execution_options(synchronize_session=False))
    if failed:
        session.execute(update(SourceImage), [{"id": image_id, "state": ImageState.failed, "error": reason}
                                              for image_id, reason in failed.items()])
    session.flush()
    crud.record_vector_changes(session, op="upsert", image_ids=list(ids), encoder_id=encoder_id)
    crud.record_vector_changes(session, op="delete", image_ids=list(failed), encoder_id=None)


def _upsert_vectors(session: Session, ids: list[int], vectors: np.ndarray, encoder_id: str) -> None:
    existing = {e.image_id: e for e in session.scalars(
        select(Embedding).where(Embedding.encoder_id == encoder_id, Embedding.image_id.in_(ids)))}
    for image_id, vector in zip(ids, vectors):
        if (embedding := existing.get(image_id)) is not None:
            embedding.vector = vector.tobytes()
        else:
            session.add(Embedding(image_id=image_id, encoder_id=encoder_id, vector=vector.tobytes()))


def embed_source_images(session: Session, encoder: Encoder, storage: Storage,
                        images: list[SourceImage], batch_size: int) -> int:
    """Embed and store vectors for `images`; returns how many were embedded. Caller commits.

    No image may take workers down for good: each attempt is counted in the row (and committed)
    before the image is decoded, so one that kills the worker (out of memory, a crash in a codec)
    leaves its count raised. Images of a batch that died are retried one by one, so only the culprit
    keeps counting, and at `max_image_attempts` it is marked failed instead of being tried again."""
    max_attempts = get_settings().max_image_attempts
    candidates = [image for image in images if not _gave_up(image, max_attempts)]
    suspects = [image for image in candidates if image.attempts > 0]
    embedded = _embed_counted(session, encoder, storage, [i for i in candidates if i.attempts == 0], batch_size)
    for suspect in suspects:
        if _passes_budgeted_check(storage, suspect):
            embedded += _embed_counted(session, encoder, storage, [suspect], 1)
    # A failed image may have had a vector from an earlier encoder: every index drops it.
    failed = [image.id for image in images if image.state == ImageState.failed]
    crud.record_vector_changes(session, op="delete", image_ids=failed, encoder_id=None)
    return embedded


def _passes_budgeted_check(storage: Storage, image: SourceImage) -> bool:
    """A batch with this image took a worker down: decode it once more in the upload check's
    sandbox (CPU and memory limits, common/sandbox.py) before this worker risks it again."""
    try:
        check_image(storage.get(image.storage_key), limits_from(get_settings()))
    except ImageRejected as exc:
        image.state, image.error = ImageState.failed, f"image refused ({exc.reason}): {exc.detail}"
        log.warning("image %s failed its budgeted check: %s", image.id, exc.detail)
        return False
    except OSError:
        return True  # a missing file: read_images marks it failed with its reason
    return True


def _gave_up(image: SourceImage, max_attempts: int) -> bool:
    if image.attempts < max_attempts:
        return False
    image.state = ImageState.failed
    image.error = f"embedding this image stopped a worker {image.attempts} times; it is not tried again"
    log.warning("image %s failed: %s", image.id, image.error)
    return True


def _embed_counted(session: Session, encoder: Encoder, storage: Storage, images: list[SourceImage],
                   batch_size: int) -> int:
    if not images:
        return 0
    for image in images:
        image.attempts += 1
    session.commit()  # before the risky part: a worker killed below leaves the count raised
    rows, decoded = read_images(storage, images)
    if not rows:
        return 0
    try:
        vectors = encoder.embed(decoded, batch_size=batch_size)
    except Exception as exc:  # e.g. MemoryError: never fatal for the worker or for the other images
        if len(rows) > 1:
            return sum(_embed_counted(session, encoder, storage, [row], 1) for row in rows)
        rows[0].state, rows[0].error = ImageState.failed, f"the encoder could not embed this image: {exc}"
        log.warning("image %s failed: %s", rows[0].id, exc)
        return 0
    write_vectors(session, rows, vectors, encoder.encoder_id)
    return len(rows)


def _missing(encoder_id: str):
    has_vector = select(Embedding.image_id).where(Embedding.encoder_id == encoder_id,
                                                  Embedding.image_id == SourceImage.id)
    return (select(SourceImage).join(Work)
            .where(Work.deleted_at.is_(None), SourceImage.state != ImageState.failed, ~has_vector.exists()))


def images_missing_vectors(session: Session, encoder_id: str, limit: int | None = None,
                           after_id: int = 0) -> list[SourceImage]:
    """Live, readable images that have no vector from this encoder yet (e.g. after a new encoder),
    in id order from `after_id` (keyset paging: each page costs the page, not the registry)."""
    query = _missing(encoder_id).where(SourceImage.id > after_id).order_by(SourceImage.id).limit(limit)
    return list(session.scalars(query))


def count_missing_vectors(session: Session, encoder_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(_missing(encoder_id).subquery())))


def embed_missing(session: Session, encoder: Encoder, storage: Storage, batch_size: int,
                  progress=None) -> int:
    """Embed every live image lacking this encoder's vector, committing batch by batch so an
    interrupted run keeps what it did and a rerun resumes where it stopped (what has a vector is
    skipped). `progress(n)` is called after each batch."""
    total, last_id = 0, 0
    while batch := images_missing_vectors(session, encoder.encoder_id, limit=batch_size, after_id=last_id):
        last_id = batch[-1].id
        done = embed_source_images(session, encoder, storage, batch, batch_size)
        session.commit()
        total += done
        if progress:
            progress(len(batch))
    return total

"""The embedding pipeline, named by its stages: read stored images -> encode -> write vectors."""
import logging

import numpy as np
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.db import crud
from common.db.models import Embedding, ImageState, SourceImage, Work
from common.images import decode_rgb
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
        except Exception as exc:  # a missing or damaged file must not block the rest
            row.state, row.error = ImageState.failed, f"cannot read stored image: {exc}"
            log.warning("image %s failed: %s", row.id, exc)
    return ok_rows, decoded


def write_vectors(session: Session, rows: list[SourceImage], vectors: np.ndarray, encoder_id: str) -> None:
    """Upsert one vector per image for this encoder (merge keeps a retried job safe), and log the upserts
    in the same transaction so every worker's index follows."""
    for row, vector in zip(rows, vectors):
        session.merge(Embedding(image_id=row.id, encoder_id=encoder_id, vector=vector.tobytes()))
        row.state, row.error = ImageState.embedded, None
    session.flush()
    crud.record_vector_changes(session, op="upsert", image_ids=[row.id for row in rows], encoder_id=encoder_id)


def embed_source_images(session: Session, encoder: Encoder, storage: Storage,
                        images: list[SourceImage], batch_size: int) -> int:
    """Embed and store vectors for `images`; returns how many were embedded. Caller commits."""
    rows, decoded = read_images(storage, images)
    failed = [row.id for row in images if row.state == ImageState.failed]
    # A failed image may have had a vector from an earlier encoder: every index drops it.
    crud.record_vector_changes(session, op="delete", image_ids=failed, encoder_id=None)
    if rows:
        write_vectors(session, rows, encoder.embed(decoded, batch_size=batch_size), encoder.encoder_id)
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

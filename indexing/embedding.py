"""The embedding pipeline, named by its stages: read stored images -> encode -> write vectors."""
import logging

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

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
    """Upsert one vector per image for this encoder (merge keeps a retried job safe)."""
    for row, vector in zip(rows, vectors):
        session.merge(Embedding(image_id=row.id, encoder_id=encoder_id, vector=vector.tobytes()))
        row.state, row.error = ImageState.embedded, None


def embed_source_images(session: Session, encoder: Encoder, storage: Storage,
                        images: list[SourceImage], batch_size: int) -> int:
    """Embed and store vectors for `images`; returns how many were embedded. Caller commits."""
    rows, decoded = read_images(storage, images)
    if rows:
        write_vectors(session, rows, encoder.embed(decoded, batch_size=batch_size), encoder.encoder_id)
    return len(rows)


def images_missing_vectors(session: Session, encoder_id: str, limit: int | None = None) -> list[SourceImage]:
    """Live, readable images that have no vector from this encoder yet (e.g. after a new encoder)."""
    has_vector = select(Embedding.image_id).where(Embedding.encoder_id == encoder_id)
    query = (select(SourceImage).join(Work)
             .where(Work.deleted_at.is_(None), SourceImage.state != ImageState.failed,
                    SourceImage.id.not_in(has_vector))
             .order_by(SourceImage.id).limit(limit))
    return list(session.scalars(query))


def embed_missing(session: Session, encoder: Encoder, storage: Storage, batch_size: int,
                  progress=None) -> int:
    """Embed every live image lacking this encoder's vector, committing batch by batch so an
    interrupted run keeps what it did. `progress(n)` is called after each batch."""
    total = 0
    while batch := images_missing_vectors(session, encoder.encoder_id, limit=batch_size):
        done = embed_source_images(session, encoder, storage, batch, batch_size)
        session.commit()
        total += done
        if progress:
            progress(len(batch))
    return total

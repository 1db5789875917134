"""Between the database and a vector store: building one from every live vector (bulk, into one
preallocated array) and choosing its parameters from the settings."""
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.db.models import Embedding, SourceImage, Work
from common.settings import Settings
from indexing import changelog
from indexing.backends.faiss import FaissStore, IndexParams, build_store


def index_params(settings: Settings) -> IndexParams:
    return IndexParams(ann_threshold=settings.ann_threshold, ann_codes=settings.ann_codes,
                       nprobe=settings.ann_nprobe, compact_after=settings.index_compact_after,
                       retry_below=settings.ann_retry_below, retry_nprobe=settings.ann_retry_nprobe,
                       rerank=settings.ann_rerank, retry_rerank=settings.ann_retry_rerank)


def _live_vectors(encoder_id: str):
    return (select(Embedding.image_id, Embedding.vector).join(SourceImage, SourceImage.id == Embedding.image_id)
            .join(Work).where(Embedding.encoder_id == encoder_id, Work.deleted_at.is_(None)))


def live_vector_ids(session: Session, encoder_id: str) -> set[int]:
    return set(session.scalars(_live_vectors(encoder_id).with_only_columns(Embedding.image_id)))


def fetch_live_vectors(session: Session, encoder_id: str, dim: int, page: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Every live vector of this encoder, paged by id into arrays allocated once (no per-row arrays)."""
    total = session.scalar(select(func.count()).select_from(_live_vectors(encoder_id).subquery()))
    ids, vectors = np.empty(total, np.int64), np.empty((total, dim), np.float32)
    n, last = 0, -1
    while n < total:
        rows = session.execute(_live_vectors(encoder_id).where(Embedding.image_id > last)
                               .order_by(Embedding.image_id).limit(min(page, total - n))).all()
        if not rows:
            break  # rows deleted since the count
        n, last = changelog._fill(rows, ids, vectors, n, dim), rows[-1][0]
    return ids[:n], vectors[:n]


def build_from_database(session: Session, encoder_id: str, dim: int, params: IndexParams) -> FaissStore:
    """A fresh store of every live vector. Its log position is the head read *before* the vectors, so
    replaying from there can only re-apply (idempotently) what the read already saw."""
    seq = changelog.head(session)
    ids, vectors = fetch_live_vectors(session, encoder_id, dim)
    return build_store(encoder_id, dim, ids, vectors, params, applied_seq=seq)

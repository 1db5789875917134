"""Between the database and a vector store: building one from every live vector (paged by id, straight
into the index, memory-bounded) and choosing its parameters from the settings."""
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.db.models import Embedding, SourceImage, Work
from common.settings import Settings
from indexing import changelog
from indexing.backends.faiss import FaissStore, IndexParams, build_from_chunks


def index_params(settings: Settings) -> IndexParams:
    return IndexParams(ann_threshold=settings.ann_threshold, ann_codes=settings.ann_codes, rotate=settings.ann_rotate,
                       nprobe=settings.ann_nprobe, compact_after=settings.index_compact_after,
                       retrain_growth=settings.index_retrain_growth,
                       retry_below=settings.ann_retry_below, retry_nprobe=settings.ann_retry_nprobe,
                       rerank=settings.ann_rerank, retry_rerank=settings.ann_retry_rerank,
                       lists=settings.ann_lists)


def _live_vectors(encoder_id: str):
    return (select(Embedding.image_id, Embedding.vector).join(SourceImage, SourceImage.id == Embedding.image_id)
            .join(Work).where(Embedding.encoder_id == encoder_id, Work.deleted_at.is_(None)))


def live_vector_ids(session: Session, encoder_id: str) -> set[int]:
    return set(session.scalars(_live_vectors(encoder_id).with_only_columns(Embedding.image_id)))


def fetch_live_vectors(session: Session, encoder_id: str, dim: int, page: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Every live vector of this encoder, paged by id into arrays allocated once (no per-row arrays)."""
    total = session.scalar(select(func.count()).select_from(_live_vectors(encoder_id).subquery()))
    ids, vectors = np.empty(total, np.int64), np.empty((total, dim), np.float32)
    n = 0
    for page_ids, page_vectors in live_vector_pages(session, encoder_id, dim, page, limit=total):
        ids[n:n + len(page_ids)], vectors[n:n + len(page_ids)] = page_ids, page_vectors
        n += len(page_ids)
    return ids[:n], vectors[:n]


def live_vector_pages(session: Session, encoder_id: str, dim: int, page: int = 20_000, limit: int | None = None,
                      max_id: int | None = None):
    """(ids, vectors) pages of the live vectors in ascending id order (keyset paging: each page costs a
    page, never a scan), at most `limit` rows in all, ids up to `max_id`."""
    last, left = -1, limit
    bounded = _live_vectors(encoder_id)
    if max_id is not None:
        bounded = bounded.where(Embedding.image_id <= max_id)
    while left is None or left > 0:
        size = page if left is None else min(page, left)
        rows = session.execute(bounded.where(Embedding.image_id > last).order_by(Embedding.image_id).limit(size)).all()
        if not rows:
            return
        ids, vectors = np.empty(len(rows), np.int64), np.empty((len(rows), dim), np.float32)
        changelog._fill(rows, ids, vectors, 0, dim)
        yield ids, vectors
        last = rows[-1][0]
        left = None if left is None else left - len(rows)
        if len(rows) < size:
            return


def _vectors_of(session: Session, encoder_id: str, dim: int, ids: np.ndarray, batch: int = 500) -> np.ndarray:
    """The live vectors of these ids (a training sample), fetched `batch` ids per query; ids deleted
    meanwhile are left out."""
    out, n = np.empty((len(ids), dim), np.float32), 0
    for start in range(0, len(ids), batch):
        part = [int(i) for i in ids[start:start + batch]]
        blobs = session.scalars(_live_vectors(encoder_id).with_only_columns(Embedding.vector)
                                .where(Embedding.image_id.in_(part))).all()
        if blobs:
            out[n:n + len(blobs)] = np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), dim)
            n += len(blobs)
    return out[:n]


def build_from_database(session: Session, encoder_id: str, dim: int, params: IndexParams,
                        scratch: Path | None = None) -> FaissStore:
    """A fresh store of every live vector, memory-bounded whatever N is: the id list first (8 bytes a
    vector, streamed from the server), a training sample drawn from it, then one pass of pages straight
    into the index (see `build_from_chunks`; `scratch` takes the re-rank rows). Its log position is the
    head read *before* the ids, so replaying from there re-applies (idempotently) what the build saw and
    adds what was committed after: the pages keep only the listed ids, so a vector committed during the
    build (a late embedding may take a smaller id than the last listed) never pushes a listed one out."""
    seq = changelog.head(session)
    ids = np.fromiter(session.scalars(_live_vectors(encoder_id).with_only_columns(Embedding.image_id)
                                      .order_by(Embedding.image_id), execution_options={"yield_per": 100_000}),
                      np.int64)

    def sample(size: int) -> np.ndarray:
        picked = ids[np.sort(np.random.default_rng(0).choice(len(ids), size, replace=False))]
        return _vectors_of(session, encoder_id, dim, picked)

    def listed_pages():
        if not len(ids):
            return
        for page_ids, page_vectors in live_vector_pages(session, encoder_id, dim, max_id=int(ids[-1])):
            at = np.minimum(np.searchsorted(ids, page_ids), len(ids) - 1)
            keep = ids[at] == page_ids
            yield page_ids[keep], page_vectors[keep]

    return build_from_chunks(encoder_id, dim, len(ids), listed_pages(), sample, params, applied_seq=seq,
                             scratch=scratch)

"""Bringing a worker's in-memory index in line with the database, the source of truth for vectors."""
import logging
import re
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.db.models import Embedding, SourceImage, Work
from core.index import IndexCorrupt, IndexEncoderMismatch, VectorIndex, load_index

log = logging.getLogger(__name__)


def live_index_dir(artifacts_dir: Path, encoder_id: str) -> Path:
    """Where workers persist the index they keep up to date for one encoder."""
    return artifacts_dir / "live" / re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_id)


def fingerprint(session: Session, encoder_id: str) -> tuple:
    """Cheap change detector: any add or delete of this encoder's vectors changes it."""
    count, latest = session.execute(
        select(func.count(), func.max(Embedding.created_at)).where(Embedding.encoder_id == encoder_id)).one()
    return int(count), str(latest)


def live_vector_ids(session: Session, encoder_id: str) -> set[int]:
    rows = session.scalars(
        select(Embedding.image_id).join(SourceImage, SourceImage.id == Embedding.image_id)
        .join(Work).where(Embedding.encoder_id == encoder_id, Work.deleted_at.is_(None)))
    return set(rows)


def fetch_vectors(session: Session, encoder_id: str, ids: list[int], dim: int,
                  chunk: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    out_ids, out_vecs = [], []
    for start in range(0, len(ids), chunk):
        rows = session.execute(select(Embedding.image_id, Embedding.vector).where(
            Embedding.encoder_id == encoder_id, Embedding.image_id.in_(ids[start:start + chunk])))
        for image_id, blob in rows:
            out_ids.append(image_id)
            out_vecs.append(np.frombuffer(blob, dtype=np.float32))
    if not out_ids:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    return np.asarray(out_ids, np.int64), np.stack(out_vecs).reshape(len(out_ids), dim)


def sync_index(session: Session, index: VectorIndex) -> tuple[int, int]:
    """Add vectors the index lacks, remove those whose work is gone. Returns (added, removed)."""
    wanted = live_vector_ids(session, index.encoder_id)
    have = set(index.ids().tolist())
    stale = np.asarray(sorted(have - wanted), np.int64)
    removed = index.remove(stale)
    ids, vectors = fetch_vectors(session, index.encoder_id, sorted(wanted - have), index.dim)
    index.add(ids, vectors)
    return len(ids), removed


def build_from_database(session: Session, encoder_id: str, dim: int) -> VectorIndex:
    """A fresh index holding every live vector of this encoder."""
    index = VectorIndex(encoder_id, dim)
    sync_index(session, index)
    return index


def index_dirs(artifacts_dir: Path, encoder_id: str, pair_index_path: str | None) -> list[Path]:
    """Where a starting worker looks for this encoder's index, in order: the live index workers keep
    up to date, then the one published with the active pair."""
    dirs = [live_index_dir(artifacts_dir, encoder_id)]
    return dirs + [Path(pair_index_path)] if pair_index_path else dirs


def open_index(directories: list[Path], encoder_id: str, dim: int) -> tuple[VectorIndex, str]:
    """The first readable index made by this encoder, else an empty one (filled from the database)."""
    for directory in directories:
        if not (directory / "index.json").exists():
            continue
        try:
            return load_index(directory, encoder_id), str(directory)
        except (IndexCorrupt, IndexEncoderMismatch) as exc:
            # Never serve a bad index: fall back to rebuilding from the database.
            log.warning("ignoring index in %s: %s", directory, exc)
    return VectorIndex(encoder_id, dim), "database"

"""Reviewers' verdicts as training data (design §8), on stored embeddings only: a confirmed verdict is a
(query vector, work) pair, a rejection a hard negative. Query vectors come from the verdict rows (the
query images are usually gone); a work's vectors are its registered images' stored embeddings under the
same encoder. Verdicts are split by query (content hash), never by row, so a held-out query was never
trained on under any of its verdicts."""
import hashlib
import uuid
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db.models import Embedding, SourceImage, VerdictKind, Work
from common.db.review import list_verdicts


@dataclass
class VerdictQuery:
    """Every verdict on one query image (by content hash), merged across jobs and reviewers."""
    query_sha256: str
    vector: np.ndarray
    confirmed: set[uuid.UUID] = field(default_factory=set)
    rejected: set[uuid.UUID] = field(default_factory=set)


@dataclass
class VerdictData:
    encoder_id: str
    queries: list[VerdictQuery]
    work_vectors: dict[uuid.UUID, np.ndarray]  # every live work's stored vectors [n_images, d]

    @property
    def confirmed_works(self) -> set[uuid.UUID]:
        return {w for q in self.queries for w in q.confirmed}


def load_verdict_data(session: Session, *, encoder_id: str) -> VerdictData:
    queries: dict[str, VerdictQuery] = {}
    for row in list_verdicts(session, encoder_id=encoder_id):
        query = queries.setdefault(row.query_sha256, VerdictQuery(
            row.query_sha256, np.frombuffer(row.query_vector, np.float32).copy()))
        if row.verdict == VerdictKind.confirm:
            query.confirmed.add(row.work_id)
        elif row.verdict == VerdictKind.reject:
            query.rejected.add(row.work_id)
    for query in queries.values():
        query.rejected -= query.confirmed  # reviewers disagreed: the confirmation wins
    return VerdictData(encoder_id, list(queries.values()), load_work_vectors(session, encoder_id=encoder_id))


def load_work_vectors(session: Session, *, encoder_id: str) -> dict[uuid.UUID, np.ndarray]:
    rows = session.execute(
        select(SourceImage.work_id, Embedding.vector).join(SourceImage, SourceImage.id == Embedding.image_id)
        .join(Work).where(Embedding.encoder_id == encoder_id, Work.deleted_at.is_(None))
        .order_by(SourceImage.id))
    grouped: dict[uuid.UUID, list[np.ndarray]] = {}
    for work_id, blob in rows:
        grouped.setdefault(work_id, []).append(np.frombuffer(blob, np.float32))
    return {w: np.stack(v) for w, v in grouped.items()}


def split_by_query(queries: list[VerdictQuery], held_out: float, seed: int = 0
                   ) -> tuple[list[VerdictQuery], list[VerdictQuery]]:
    """A stable split: a query's side depends only on its hash and the seed, so adding verdicts later
    never moves an already held-out query into training."""
    def side(query: VerdictQuery) -> float:
        digest = hashlib.sha256(f"{seed}:{query.query_sha256}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64
    train = [q for q in queries if side(q) >= held_out]
    test = [q for q in queries if side(q) < held_out]
    return train, test


def rank_of_work(query: np.ndarray, work_vectors: dict[uuid.UUID, np.ndarray], target: uuid.UUID) -> int:
    """1-based rank of `target` among works scored by their closest image (the service's ranking)."""
    scores = {w: float((v @ query).max()) for w, v in work_vectors.items()}
    return 1 + sum(s > scores[target] for w, s in scores.items() if w != target)


def held_out_metrics(queries: list[VerdictQuery], work_vectors: dict[uuid.UUID, np.ndarray],
                     map_query=lambda v: v) -> dict:
    """On held-out verdicts: mean AP (one relevant work: 1/rank) and top-1 over confirmed pairs, in %;
    and how often a rejected work is still ranked first (lower is better)."""
    ranks, rejected_first = [], []
    for query in queries:
        vector = map_query(query.vector[None])[0]
        ranks += [rank_of_work(vector, work_vectors, w) for w in query.confirmed if w in work_vectors]
        rejected_first += [rank_of_work(vector, work_vectors, w) == 1 for w in query.rejected if w in work_vectors]
    ranks = np.asarray(ranks, np.float64)
    return {"n_confirmed": int(ranks.size), "n_rejected": len(rejected_first),
            "map": float(100 * np.mean(1 / ranks)) if ranks.size else None,
            "top1": float(100 * np.mean(ranks == 1)) if ranks.size else None,
            "rejected_ranked_first": float(100 * np.mean(rejected_first)) if rejected_first else None}

"""Reading the change log (docs/design.md §2): what a worker must apply to its vector store since the
position it has applied. Writers append through `common.db.crud.record_vector_changes`, in the same
transaction as the vectors, so the log and the embeddings table never disagree.

Registration cost must not grow with the registry: a worker asks "anything new?" with one primary-key
read of the counter and then reads only the rows past its position, never a diff of every id."""
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from common.db.models import ChangelogHead, Embedding, VectorChange


@dataclass
class Changes:
    """The net effect of a stretch of the log: the last op per image wins."""
    upserts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    deletes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    last_seq: int = 0
    rows_read: int = 0


def head(session: Session) -> int:
    """The last committed sequence number (0 for an empty log): one primary-key lookup."""
    return int(session.scalar(select(ChangelogHead.seq).where(ChangelogHead.id == 1)) or 0)


def read_changes(session: Session, *, encoder_id: str, after: int, limit: int = 50_000) -> Changes:
    """Up to `limit` log rows past `after` that concern this encoder (its upserts, every delete)."""
    rows = session.execute(
        select(VectorChange.seq, VectorChange.op, VectorChange.image_id)
        .where(VectorChange.seq > after,
               or_(VectorChange.encoder_id == encoder_id, VectorChange.encoder_id.is_(None)))
        .order_by(VectorChange.seq).limit(limit)).all()
    last_op: dict[int, str] = {}
    for _, op, image_id in rows:
        last_op[image_id] = op
    ids_by_op = {op: np.fromiter((i for i, o in last_op.items() if o == op), np.int64) for op in ("upsert", "delete")}
    return Changes(ids_by_op["upsert"], ids_by_op["delete"], rows[-1][0] if rows else after, len(rows))


def fetch_vectors(session: Session, *, encoder_id: str, ids: np.ndarray, dim: int,
                  chunk: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of these images (those that still exist), read in bulk into one preallocated array."""
    out_ids = np.empty(len(ids), np.int64)
    out = np.empty((len(ids), dim), np.float32)
    n = 0
    for start in range(0, len(ids), chunk):
        part = [int(i) for i in ids[start:start + chunk]]
        rows = session.execute(select(Embedding.image_id, Embedding.vector).where(
            Embedding.encoder_id == encoder_id, Embedding.image_id.in_(part))).all()
        n = _fill(rows, out_ids, out, n, dim)
    return out_ids[:n], out[:n]


def _fill(rows, out_ids: np.ndarray, out: np.ndarray, n: int, dim: int) -> int:
    """Copy rows of (id, float32 blob) into the arrays from position n; one join of the blobs, no per-row
    numpy array."""
    if not rows:
        return n
    ids, blobs = zip(*rows)
    out_ids[n:n + len(ids)] = ids
    out[n:n + len(ids)] = np.frombuffer(b"".join(blobs), np.float32).reshape(len(ids), dim)
    return n + len(ids)

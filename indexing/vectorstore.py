"""The one interface workers search through (docs/design.md §3). Backends live in
`indexing/backends/` (FAISS on one machine, Milvus for clusters); nothing else imports faiss or pymilvus,
so the job code never changes when the engine does."""
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorStore(Protocol):
    encoder_id: str
    dim: int
    applied_seq: int  # the change-log position (indexing.changelog) this store includes

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """ids int64 [n], vectors float32 [n, dim], L2-normalised. Re-adding an id replaces it."""

    def delete(self, ids: np.ndarray) -> int:
        """Remove these ids (unknown ids are ignored); returns how many were removed."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries [m, dim] -> (ids [m, k'], scores [m, k']); id -1 marks 'nothing here'."""

    def count(self) -> int:
        """How many vectors the store holds."""

    def describe(self) -> dict:
        """backend, index type, count, dim, encoder_id, applied_seq, snapshot info: for /readyz and metrics."""


class IndexEncoderMismatch(ValueError):
    """The index on disk was built by another encoder than the one serving."""


class IndexCorrupt(ValueError):
    """The index files are missing, unreadable or disagree with their sidecar."""

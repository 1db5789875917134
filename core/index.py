"""A FAISS inner-product index over L2-normalised vectors, keyed by source-image id, saved with a
JSON sidecar that names the encoder that made its vectors (after autofaiss/clip-retrieval).

Exact search (`IDMap2,Flat`) is the default: it is exact and fast enough up to ~1M vectors of this
size on one CPU (offline-assets.md); the factory string is a parameter for larger deployments."""
import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np

INDEX_FILE = "index.faiss"
SIDECAR_FILE = "index.json"


class IndexEncoderMismatch(ValueError):
    """The index on disk was built by another encoder than the one serving."""


class IndexCorrupt(ValueError):
    """The index files are missing, unreadable or disagree with their sidecar."""


@dataclass
class VectorIndex:
    encoder_id: str
    dim: int
    factory: str = "IDMap2,Flat"
    index_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _index: faiss.Index = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)

    def __len__(self) -> int:
        return self._index.ntotal

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """ids [n] int64, vectors [n, dim] float32 (L2-normalised). Re-adding an id replaces it."""
        if len(ids) == 0:
            return
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        self.remove(ids)
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        return int(self._index.remove_ids(np.asarray(ids, dtype=np.int64)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries [m, dim] -> (ids [m, k'], scores [m, k']), k' = min(k, len). The exact default factory
        never pads; an approximate one may return id -1 where it found fewer, which maps to no work
        and is ignored by ranking."""
        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return ids, scores

    def manifest(self) -> dict:
        return {"format": "attrib-index/1", "index_id": self.index_id, "encoder_id": self.encoder_id,
                "dim": self.dim, "count": len(self), "factory": self.factory, "metric": "inner_product",
                "saved_at": datetime.now(timezone.utc).isoformat()}

    def save(self, directory: Path) -> None:
        """Write index + sidecar; each file is replaced atomically, the sidecar last."""
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(directory / INDEX_FILE, faiss.serialize_index(self._index).tobytes())
        _atomic_write(directory / SIDECAR_FILE, json.dumps(self.manifest(), indent=2).encode())


def load_index(directory: Path, expected_encoder_id: str) -> VectorIndex:
    """Load an index; refuse one made by another encoder or one that disagrees with its sidecar."""
    try:
        manifest = json.loads((directory / SIDECAR_FILE).read_text())
        raw = np.frombuffer((directory / INDEX_FILE).read_bytes(), dtype=np.uint8)
        faiss_index = faiss.deserialize_index(raw)
    except (OSError, ValueError, RuntimeError) as exc:
        raise IndexCorrupt(f"cannot read index in {directory}: {exc}") from exc
    if manifest["encoder_id"] != expected_encoder_id:
        raise IndexEncoderMismatch(
            f"index {directory} was built by {manifest['encoder_id']}, not {expected_encoder_id}")
    if faiss_index.d != manifest["dim"] or faiss_index.ntotal != manifest["count"]:
        raise IndexCorrupt(f"index {directory} disagrees with its sidecar")
    index = VectorIndex(manifest["encoder_id"], manifest["dim"], manifest["factory"], manifest["index_id"])
    index._index = faiss_index
    return index


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

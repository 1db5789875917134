"""A VectorStore on Milvus (docs/design.md §3): the backend for catalogues that outgrow one machine.

The same code talks to a Milvus cluster (`http://host:19530`) or to milvus-lite (a local `.db` file, used in
tests and CI): only the URI changes. One collection holds one (encoder, build): its name is derived from both,
and the encoder id, dimension and change-log position are stored in the collection's own properties, so a
collection made by another encoder is refused rather than searched (vectors from two encoders are not
comparable). The metric is inner product on L2-normalised vectors, as in the FAISS backend.

milvus-lite limits (they shape the tests): it serves FLAT and IVF_FLAT indexes only, and one process at a time
may open a data file; a second opener fails, which `open_milvus_store` reports as `MilvusFileBusy`.

Which collection serves is decided by the active pair row (`model_pairs.collection`), the same switch on every
backend. Where the engine has aliases, `point_alias` also keeps one stable name per encoder on the serving
collection, for whatever reads Milvus outside the workers; `supports_aliases` detects them (milvus-lite 2.4 is
documented without; 3.2.2, installed here, has them).
"""
import hashlib
import re

import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from indexing.vectorstore import IndexEncoderMismatch

FORMAT = "attrib-milvus/1"
_ENCODER, _DIM, _SEQ, _FORMAT = "attrib.encoder_id", "attrib.dim", "attrib.applied_seq", "attrib.format"
_NAME_MAX = 255  # Milvus' collection-name limit (ours stay under 140: job rows keep it in 200 chars)


class MilvusEncoderMismatch(IndexEncoderMismatch):
    """The collection was made by another encoder (or with another dimension) than the one serving."""


class MilvusFileBusy(RuntimeError):
    """milvus-lite refused its data file: another process holds it (one process per file)."""


def collection_name(encoder_id: str, build: str) -> str:
    """A name Milvus accepts (letters, digits, '_'), readable, and unique per (encoder, build) even when
    two encoder ids differ only in characters the cleaning drops (hence the hash)."""
    digest = hashlib.sha256(f"{encoder_id}\0{build}".encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9]+", "_", f"{encoder_id}_{build}").strip("_")[:120]
    return f"attrib_{readable}_{digest}"[:_NAME_MAX]


def alias_name(encoder_id: str) -> str:
    """The stable per-encoder name that points at the serving collection (where aliases exist). Per
    encoder, so whoever searches through it embeds queries with the encoder its vectors came from."""
    return collection_name(encoder_id, "serving")


def is_lite_uri(uri: str) -> bool:
    """milvus-lite URIs are local file paths ending in .db; anything else is a server."""
    return not re.match(r"^[a-z]+://", uri) and uri.endswith(".db")


def connect(uri: str, token: str = "") -> MilvusClient:
    try:
        return MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
    except MilvusException as exc:
        if is_lite_uri(uri):
            raise MilvusFileBusy(f"milvus-lite could not open {uri}: a data file serves one process at a "
                                 f"time; give each worker process its own file, or use a Milvus server") from exc
        raise


def supports_aliases(client: MilvusClient) -> bool:
    """Ask the engine: servers and milvus-lite 3.2.2 list aliases; an engine without them (milvus-lite 2.4
    is documented without) answers with an error. Anything but a clean answer means "no aliases": the pair
    row still switches collections, which is what workers follow anyway."""
    try:
        client.list_aliases()
        return True
    except (MilvusException, NotImplementedError, AttributeError):
        return False


def point_alias(client: MilvusClient, encoder_id: str, collection: str) -> bool:
    """Point the encoder's alias at `collection` (one atomic step in Milvus); False if there are no aliases.
    A no-op when it already points there, so every publisher and rollback may call it."""
    if not supports_aliases(client):
        return False
    alias = alias_name(encoder_id)
    if alias in client.list_aliases().get("aliases", []):
        if client.describe_alias(alias).get("collection_name") != collection:
            client.alter_alias(collection, alias)
    else:
        client.create_alias(collection, alias)
    return True


class MilvusStore:
    """`indexing.vectorstore.VectorStore` over one Milvus collection."""

    def __init__(self, client: MilvusClient, *, encoder_id: str, dim: int, build: str = "live",
                 collection: str | None = None, index_type: str = "FLAT", index_params: dict | None = None,
                 flush_before_read: bool = True):
        """`collection` opens a named collection (the one a pair row names) instead of deriving the name;
        its stored encoder must still be `encoder_id`."""
        self.client, self.encoder_id, self.dim, self.build = client, encoder_id, dim, build
        # milvus-lite scans unflushed (growing) rows slowly: ~0.7 s per request at 2,000 x 1280-d, against
        # ~0.05 s once flushed (measured here). So with lite, the first read after writes flushes. A server
        # indexes growing segments itself and flushes on its own schedule: pass False there.
        self.flush_before_read, self._unflushed = flush_before_read, False
        self.name = collection or collection_name(encoder_id, build)
        self.index_type = index_type
        if client.has_collection(self.name):
            self._applied_seq = self._check_identity()
        else:
            self._create(index_type, index_params or {})
            self._applied_seq = 0

    def _create(self, index_type: str, params: dict) -> None:
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=params)
        self.client.create_collection(self.name, schema=schema, index_params=index,
                                      consistency_level="Strong", properties=self._identity(0))

    def _identity(self, applied_seq: int) -> dict:
        return {_FORMAT: FORMAT, _ENCODER: self.encoder_id, _DIM: str(self.dim), _SEQ: str(applied_seq)}

    def _check_identity(self) -> int:
        """Refuse a collection made by another encoder; returns its stored change-log position."""
        props = self.client.describe_collection(self.name).get("properties", {})
        if props.get(_ENCODER) != self.encoder_id or props.get(_DIM) != str(self.dim):
            raise MilvusEncoderMismatch(
                f"collection {self.name} holds vectors of encoder {props.get(_ENCODER)!r} "
                f"(dim {props.get(_DIM)}), not {self.encoder_id!r} (dim {self.dim})")
        self.client.load_collection(self.name)
        return int(props.get(_SEQ, 0))

    @property
    def index_id(self) -> str:
        """What results record as the index that answered (job rows keep it): the collection's name."""
        return self.name

    @property
    def applied_seq(self) -> int:
        return self._applied_seq

    def reload_position(self) -> int:
        """Re-read the stored position: on a shared server another worker may have applied more since."""
        props = self.client.describe_collection(self.name).get("properties", {})
        self._applied_seq = int(props.get(_SEQ, 0))
        return self._applied_seq

    @applied_seq.setter
    def applied_seq(self, seq: int) -> None:
        """Stored in the collection itself, so a restarted worker (or another host) resumes from it.
        Set it only after the changes up to `seq` were applied: replaying upserts/deletes is harmless."""
        self.client.alter_collection_properties(self.name, properties={_SEQ: str(int(seq))})
        self._applied_seq = int(seq)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        if len(ids) == 0:
            return
        if len(set(ids.tolist())) != len(ids):
            raise ValueError("duplicate ids in one upsert")
        rows = [{"id": int(i), "vector": v.tolist()} for i, v in zip(ids, vectors)]
        for start in range(0, len(rows), 5000):  # keep each request well under the server's message limit
            self.client.upsert(self.name, rows[start:start + 5000])
        self._unflushed = True

    def delete(self, ids: np.ndarray) -> int:
        """Milvus reports ids it was asked to delete, present or not; count those that were present."""
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64)]
        if not ids:
            return 0
        present = self.client.query(self.name, ids=ids, output_fields=["id"])
        if present:
            self.client.delete(self.name, ids=[row["id"] for row in present])
            self._unflushed = True
        return len(present)

    def _settle(self) -> None:
        if self.flush_before_read and self._unflushed:
            self.client.flush(self.name)
        self._unflushed = False

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = min(k, self.count())  # count() settles pending writes first
        ids = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        if k == 0 or len(queries) == 0:
            return ids, scores
        hits = self.client.search(self.name, data=queries.tolist(), limit=k, output_fields=["id"],
                                  search_params={"metric_type": "IP"})
        for row, found in enumerate(hits):
            for col, hit in enumerate(found[:k]):
                ids[row, col], scores[row, col] = hit["id"], hit["distance"]
        return ids, scores

    def count(self) -> int:
        self._settle()
        result = self.client.query(self.name, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def describe(self) -> dict:
        return {"backend": "milvus", "index_type": self.index_type, "collection": self.name,
                "index_id": self.index_id,
                "count": self.count(), "dim": self.dim, "encoder_id": self.encoder_id,
                "applied_seq": self.applied_seq, "build": self.build, "snapshot": None}

    def drop(self) -> None:
        """Remove this collection (an old build after a pair switch, once no worker serves it)."""
        self.client.drop_collection(self.name)


_clients: dict[str, MilvusClient] = {}
_held_locks: list = []


def lite_file_for_this_process(folder) -> str:
    """A milvus-lite file this process alone may open: the first `worker-N.db` whose lock it can take.
    The lock lives as long as the process, so a restarted worker reuses a free file (and the collection,
    change-log position included, that it left there) and two live workers never share one."""
    import fcntl
    from itertools import count
    from pathlib import Path
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for n in count():
        lock = open(folder / f"worker-{n}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _held_locks.append(lock)
        return str(folder / f"worker-{n}.db")


def client_for(settings) -> MilvusClient:
    """One client per process and URI (a milvus-lite file cannot be opened twice, even by its own process)."""
    uri = settings.milvus_uri or _clients.get("default-lite") or lite_file_for_this_process(
        settings.data_dir / "milvus")
    if not settings.milvus_uri:
        _clients.setdefault("default-lite", uri)
    if uri not in _clients:
        _clients[uri] = connect(uri, settings.milvus_token)
    return _clients[uri]


def shared_uri(settings) -> bool:
    """A server or cluster: every worker writes the same collections (a lite file belongs to one process)."""
    return bool(settings.milvus_uri) and not is_lite_uri(settings.milvus_uri)


def open_milvus_store(settings, *, encoder_id: str, dim: int, collection: str | None = None,
                      build: str = "live") -> MilvusStore:
    """The collection a pair row names (created here if this engine lacks it: a lite file per worker fills
    its own copy from the change log), else the encoder's default `build` collection."""
    return MilvusStore(client_for(settings), encoder_id=encoder_id, dim=dim, build=build, collection=collection,
                       index_type=settings.milvus_index_type, flush_before_read=not shared_uri(settings))

"""What a worker holds between jobs: the encoder and its index, following the active pair.

Loaded once at worker start (not per job), checked before every job: if an admin published a new
(encoder, index) pair, the worker switches to it before running the job; the index is then brought up
to date from the database, so works registered through any worker become searchable here."""
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from common.db import crud
from common.settings import Settings
from core.calibration import Calibration
from core.encoder import Encoder, load_encoder
from core.index import VectorIndex
from common.storage import get_storage
from indexing.artifacts import resolve
from indexing.embedding import embed_missing
from indexing.store import fingerprint, index_dirs, live_index_dir, open_index, sync_index

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    encoder: Encoder
    index: VectorIndex
    pair_id: int | None
    loaded_from: str
    device: str = "cpu"
    calibration: Calibration = field(default_factory=Calibration)  # the pair's, else the encoder's (design §7)
    _fingerprint: tuple | None = field(default=None, repr=False)
    _saved_at: float = field(default=0.0, repr=False)
    _dirty: bool = field(default=False, repr=False)

    @classmethod
    def load(cls, session: Session, settings: Settings, device: str = "cpu") -> "Runtime":
        pair = crud.get_active_pair(session)
        encoder = load_encoder(resolve(pair.encoder_uri, settings) if pair else settings.encoder, device)
        index, source = _open_vectors(settings, encoder, pair)
        calibration = Calibration.from_dict(pair.calibration) if pair and pair.calibration else encoder.calibration
        runtime = cls(settings, encoder, index, pair.id if pair else None, source, device, calibration)
        log.info("loaded encoder %s, index %s (%d vectors) from %s", encoder.encoder_id, index.index_id,
                 len(index), source)
        # Images registered while another encoder was active have no vector from this one yet.
        caught_up = embed_missing(session, encoder, get_storage(settings), settings.embed_batch_size)
        if caught_up:
            log.info("embedded %d images that lacked a vector from this encoder", caught_up)
        runtime.sync(session)
        return runtime

    def follow_active_pair(self, session: Session) -> "Runtime":
        """Return self, or a freshly loaded runtime when the active pair changed."""
        pair = crud.get_active_pair(session)
        if (pair.id if pair else None) == self.pair_id:
            return self
        log.info("active pair changed (%s -> %s); reloading", self.pair_id, pair.id if pair else None)
        self.save()
        return Runtime.load(session, self.settings, self.device)

    def sync(self, session: Session) -> None:
        current = fingerprint(session, self.encoder.encoder_id)
        if current == self._fingerprint:
            return
        added, removed = sync_index(session, self.index)
        self._fingerprint = current
        if added or removed:
            self._dirty = True
            log.info("index synced: +%d -%d -> %d vectors", added, removed, len(self.index))
        if self._dirty and time.monotonic() - self._saved_at >= self.settings.index_save_interval_s:
            self.save()

    def save(self) -> None:
        """Persist the index so a restarted worker loads it instead of rebuilding."""
        if self._dirty:
            self.index.save(live_index_dir(self.settings.artifacts_dir, self.encoder.encoder_id))
            self._dirty, self._saved_at = False, time.monotonic()

    def describe(self) -> dict:
        return {"encoder_id": self.encoder.encoder_id, "index_id": self.index.index_id,
                "index_size": len(self.index), "pair_id": self.pair_id, "loaded_from": self.loaded_from,
                "calibration": self.calibration.summary()}


def _open_vectors(settings: Settings, encoder: Encoder, pair) -> tuple:
    """INTERIM backend choice until the vector-store seam (docs/design.md §3) lands here."""
    if settings.vector_backend == "milvus":
        from indexing.backends.milvus import MilvusIndexAdapter, open_milvus_store
        store = open_milvus_store(settings, encoder_id=encoder.encoder_id, dim=encoder.dim)
        return MilvusIndexAdapter(store), f"milvus:{store.name}"
    directories = index_dirs(settings.artifacts_dir, encoder.encoder_id,
                             resolve(pair.index_path, settings) if pair else None)
    return open_index(directories, encoder.encoder_id, encoder.dim)


_current: Runtime | None = None


def set_runtime(runtime: Runtime) -> None:
    global _current
    _current = runtime


def get_runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("worker runtime not loaded; start workers with `python -m worker`")
    return _current

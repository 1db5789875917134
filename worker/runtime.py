"""What a worker holds between jobs: the encoder and its vector store, following the active pair.

Loaded once at worker start (not per job), checked before every job: if an admin published a new
(encoder, index) pair, the worker switches to it before running the job. The store follows the change
log (indexing.follower), so works registered through any worker become searchable here; snapshots
and rebuilds run in indexing.live, off the job thread.

A worker that serves only the embedding queue holds no store at all (`with_index=False`): embedding
writes vectors and the change log, never searches, and a store costs every worker its own copy of the
codes (fast-scan lists are not shared: 175 MB at 1M, 1.7 GB at 10M), a snapshot load at start and a
sync after every job. Such a worker never writes snapshots either; the attribution worker does."""
import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from common.db import crud
from common.settings import Settings
from common.storage import get_storage
from core.calibration import Calibration
from core.encoder import Encoder, load_encoder
from core.pipeline import Feeder
from indexing.artifacts import resolve
from indexing.embedding import embed_missing
from indexing.live import LiveStore
from indexing.snapshots import WriterLock
from indexing.vectorstore import VectorStore
from worker.batch_embed import make_feeder

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    encoder: Encoder
    live: LiveStore | None  # None: an embedding-only worker (see above)
    pair_id: int | None
    device: str = "cpu"
    calibration: Calibration = field(default_factory=Calibration)  # the pair's, else the encoder's (design §7)
    _feeder: Feeder | None = field(default=None, repr=False)

    @classmethod
    def load(cls, session: Session, settings: Settings, device: str = "cpu", with_index: bool = True) -> "Runtime":
        pair = crud.get_active_pair(session)
        encoder = load_encoder(resolve(pair.encoder_uri, settings) if pair else settings.encoder, device)
        encoder.use_channels_last(settings.channels_last)  # here, so a runtime reloaded for a new pair keeps it
        calibration = Calibration.from_dict(pair.calibration) if pair and pair.calibration else encoder.calibration
        # Images registered while another encoder was active have no vector from this one yet.
        caught_up = embed_missing(session, encoder, get_storage(settings), settings.embed_batch_size)
        if caught_up:
            log.info("embedded %d images that lacked a vector from this encoder", caught_up)
        live = None
        if with_index:
            index_path = resolve(pair.index_path, settings) if pair else None
            live = LiveStore.open(session, settings, encoder.encoder_id, encoder.dim, index_path,
                                  collection=pair.collection if pair else None)
            log.info("loaded encoder %s, index %s from %s", encoder.encoder_id, live.store.describe(), live.loaded_from)
        else:
            log.info("loaded encoder %s; no index (this worker only embeds)", encoder.encoder_id)
        return cls(settings, encoder, live, pair.id if pair else None, device, calibration)

    @property
    def feeder(self) -> Feeder:
        """The decode pipeline of this encoder, made on first use and kept for every embedding job (its
        transform, GPU decoder and thread pools are not rebuilt per job)."""
        if self._feeder is None:
            self._feeder = make_feeder(self.encoder, self.settings, self.device)
        return self._feeder

    def close(self) -> None:
        if self._feeder is not None:
            self._feeder.close()

    @property
    def store(self) -> VectorStore:
        if self.live is None:
            raise RuntimeError("this worker holds no index: it serves only the embedding queue")
        return self.live.store

    @property
    def loaded_from(self) -> str | None:
        return self.live.loaded_from if self.live is not None else None

    def follow_active_pair(self, session: Session) -> "Runtime":
        """Return self, or a freshly loaded runtime when the active pair changed."""
        pair = crud.get_active_pair(session)
        if (pair.id if pair else None) == self.pair_id:
            return self
        log.info("active pair changed (%s -> %s); reloading", self.pair_id, pair.id if pair else None)
        fresh = Runtime.load(session, self.settings, self.device, with_index=self.live is not None)
        self.close()
        return fresh

    def sync(self, session: Session) -> None:
        if self.live is not None:
            self.live.sync(session)

    def snapshot(self, lock: WriterLock | None, rebuild: bool = True) -> str | None:
        return self.live.snapshot(lock, rebuild) if self.live is not None else None

    def describe(self) -> dict:
        """The heartbeat's payload; an embedding-only worker's index fields are None."""
        store = self.store.describe() if self.live is not None else {}
        return {"encoder_id": self.encoder.encoder_id, "index_id": store.get("index_id"),
                "index_size": store.get("count"), "index": store or None, "index_type": store.get("index_type"),
                "snapshot_saved_at": self.live.snapshot_at if self.live is not None else None,
                "pair_id": self.pair_id, "loaded_from": self.loaded_from or "no index: this worker only embeds",
                "calibration": self.calibration.summary()}


_current: Runtime | None = None


def set_runtime(runtime: Runtime) -> None:
    global _current
    _current = runtime


def get_runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("worker runtime not loaded; start workers with `python -m worker`")
    return _current

"""A worker's vector store over its lifetime: opened from the newest snapshot (else the published
pair's index, else the database), kept current by the change log, snapshotted by one writer, and
swapped for a new base when it outgrows its own (exact -> approximate, or too many changes): its
changes folded into a copy of the base, or a base rebuilt from the database.

The job thread syncs and searches; a background thread snapshots and rebuilds. A lock keeps them
from changing the store at the same time, held only for milliseconds: a snapshot copies the changes
under it and writes outside it (the base never changes); a rebuild runs outside it and swaps in when
caught up, so searches keep being served (exactly, by base + delta) until the new base is ready."""
import logging
import threading
import time
from pathlib import Path

from sqlalchemy.orm import Session

from common.db.session import new_session
from common.low_priority import run_niced
from common.settings import Settings
from common.storage import get_storage
from indexing.apply_lock import ApplyLock
from indexing.backends.faiss import FaissStore, IndexParams, load_store
from indexing.backends.faiss_fold import can_fold, fold
from indexing.follower import SyncResult, sync_shared, sync_store
from indexing.snapshots import WriterLock, load_snapshot, write_snapshot
from indexing.store import build_from_database, index_params
from indexing.vectorstore import IndexCorrupt, IndexEncoderMismatch

log = logging.getLogger(__name__)


class LiveStore:
    def __init__(self, store: FaissStore, loaded_from: str, settings: Settings, apply_lock: ApplyLock | None = None):
        """`apply_lock`: the store is a collection other workers write too (a Milvus server); syncs take it."""
        self.store, self.loaded_from, self.settings, self.apply_lock = store, loaded_from, settings, apply_lock
        self.params: IndexParams = index_params(settings)
        self.storage = get_storage(settings)
        self.snapshot_seq = store.applied_seq if loaded_from.startswith("snapshots/") else -1
        # When this worker last loaded or wrote a snapshot (unix time; the metrics' snapshot age).
        self.snapshot_at: float | None = time.time() if self.snapshot_seq >= 0 else None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, session: Session, settings: Settings, encoder_id: str, dim: int,
             pair_index_path: str | None, collection: str | None = None) -> "LiveStore":
        """Warm start from a snapshot or the published index (memory-mapped), else cold from the database.
        On Milvus the engine persists the vectors and their log position itself: open the collection the
        active pair names (`collection`; none: the encoder's default one) and replay the tail."""
        if settings.vector_backend == "milvus":
            return cls._open_milvus(session, settings, encoder_id, dim, collection)
        found = saved_store(settings, encoder_id, pair_index_path)
        if found is None:
            found = build_from_database(session, encoder_id, dim, index_params(settings),
                                        scratch=settings.cache_dir), "database"
        live = cls(*found, settings)
        live.sync(session)
        return live

    @classmethod
    def _open_milvus(cls, session: Session, settings: Settings, encoder_id: str, dim: int,
                     collection: str | None) -> "LiveStore":
        from indexing.backends.milvus import (  # only Milvus deployments import pymilvus
            open_milvus_store,
            shared_uri,
        )
        store = open_milvus_store(settings, encoder_id=encoder_id, dim=dim, collection=collection)
        lock = None
        if shared_uri(settings):
            from redis import Redis
            lock = ApplyLock(Redis.from_url(settings.redis_url), settings.queue_name, store.name)
        live = cls(store, f"milvus:{store.name}", settings, lock)
        live.sync(session)
        return live

    @property
    def snapshots(self) -> bool:
        """FAISS stores are snapshotted and rebuilt here; a Milvus collection persists and indexes itself."""
        return isinstance(self.store, FaissStore)

    def sync(self, session: Session) -> SyncResult:
        with self._lock:
            if self.apply_lock is not None:
                result = sync_shared(session, self.store, self.apply_lock)
            else:
                result = sync_store(session, self.store)
        if result.waited_out:
            log.warning("another worker held %s too long; serving the collection as it is", self.apply_lock.key)
        if result.rows_read:
            log.info("index synced: +%d -%d -> %d vectors (log %d)", result.upserted, result.deleted,
                     self.store.count(), self.store.applied_seq)
        return result

    def snapshot(self, lock: WriterLock | None, rebuild: bool = True) -> str | None:
        """Every worker first applies the log (an import with no attribution arriving would otherwise
        leave this store, and so the snapshot, behind: the workers that embed hold no index). Writer:
        rebuild the base if needed, then save a snapshot if anything changed since the last. Other
        workers: switch to a newer base another worker published. Runs off the job thread."""
        with new_session() as session:
            self.sync(session)
        if not self.snapshots:
            return None
        if lock is not None and not lock.acquire():
            self.refresh()
            return None
        if rebuild and self.store.needs_rebuild(self.params):
            self._swap(self._rebuilt())
        with self._lock:  # a copy of the changes, in milliseconds; the write goes on without the lock
            store = self.store
            if store.applied_seq == self.snapshot_seq:
                return None
            state = store.state()
        # Jobs keep syncing and searching meanwhile: the first write of a new base is 2.5 GB at 1M and
        # 26 GB at 10M (26 s), and every job's sync used to wait for it.
        key = write_snapshot(self.storage, store, scratch=self.settings.cache_dir, state=state)
        self.snapshot_seq, self.snapshot_at = state.applied_seq, time.time()
        if self.store.base_path is None:  # a base built here: serve the stored copy (mapped where FAISS can)
            self.refresh(force=True)
        return key

    def refresh(self, force: bool = False) -> None:
        """Load the newest snapshot if its base differs from ours (another worker rebuilt it)."""
        if not (force or self.store.needs_rebuild(self.params)):
            return
        found = load_snapshot(self.storage, self.store.encoder_id, self.settings.cache_dir)
        if found is not None and (force or found[0].index_id != self.store.index_id):
            saved_seq = found[0].applied_seq  # before the swap catches it up: the snapshot holds no more
            self._swap(found[0])
            self.snapshot_seq, self.snapshot_at = saved_seq, time.time()

    def _rebuilt(self) -> FaissStore:
        """A new base, built at a lower CPU priority than the jobs (common/low_priority.py): the store's
        changes folded into a copy of its base when that keeps the base a rebuild would make
        (backends/faiss_fold.py: seconds where a rebuild takes minutes), else, or when the fold fails
        (its base file gone, a store at odds with itself), a rebuild from the database."""
        store = self.store

        def from_database() -> FaissStore:
            log.info("rebuilding the index base (%s, %d vectors)", store.factory, store.count())
            with new_session() as session:
                return build_from_database(session, store.encoder_id, store.dim, self.params,
                                           scratch=self.settings.cache_dir)
        if not can_fold(store, self.params):
            return run_niced(from_database, self.settings.index_rebuild_nice, name="rebuild")
        with self._lock:  # the changes as of one log position; the swap replays what follows
            state = store.state()

        def folded() -> FaissStore:
            log.info("folding %d changes into the index base (%s, %d vectors)",
                     len(state.delta_ids) + len(state.masked), store.factory, store.count())
            try:
                return fold(store, state, self.params, scratch=self.settings.cache_dir)
            except (OSError, RuntimeError, ValueError) as exc:  # FAISS reports a missing file as RuntimeError
                log.warning("could not fold the changes into the index base (%s); rebuilding it", exc)
                return from_database()
        return run_niced(folded, self.settings.index_rebuild_nice, name="rebuild")

    def _swap(self, fresh: FaissStore) -> None:
        """Catch the new store up, then serve it. Most of the tail (all an import added during a rebuild)
        is applied before taking the lock, which only covers what arrived in between."""
        with new_session() as session:
            sync_store(session, fresh)
        with self._lock, new_session() as session:
            sync_store(session, fresh)
            self.store = fresh
        log.info("serving index %s (%s, %d vectors)", fresh.index_id, fresh.factory, fresh.count())


def saved_store(settings: Settings, encoder_id: str, pair_index_path: str | None, *,
                strict: bool = False) -> tuple[FaissStore, str] | None:
    """What a starting worker loads before the change log, and where from: the newest snapshot of this
    encoder, else the published pair's index (memory-mapped); None: build from the database.
    A published index that cannot be served is skipped with a warning (never serve a bad index), or
    with `strict` raises IndexCorrupt/IndexEncoderMismatch (worker.consistency reports it)."""
    found = load_snapshot(get_storage(settings), encoder_id, settings.cache_dir)
    if found is not None or not pair_index_path:
        return found
    directory = Path(pair_index_path)
    if strict and not (directory / "index.json").exists():
        return None  # nothing was published there: not a problem to report
    try:
        return load_store(directory, encoder_id, mmap=True), str(directory)
    except (IndexCorrupt, IndexEncoderMismatch) as exc:
        if strict:
            raise
        log.warning("ignoring index in %s: %s", directory, exc)
        return None

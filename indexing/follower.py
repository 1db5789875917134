"""Keeping a vector store in line with the database by replaying the change log (docs/design.md §2).

The cost of a sync is the number of changes since the store's position, not the registry's size: one
primary-key read of the log head when nothing changed, else the new log rows and their vectors."""
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from indexing import changelog
from indexing.apply_lock import ApplyLock
from indexing.vectorstore import VectorStore

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    upserted: int = 0
    deleted: int = 0
    rows_read: int = 0  # change-log rows read (tests assert a sync reads only what changed)
    waited_out: bool = False  # shared store: another applier held the lock too long; served as it was


def sync_store(session: Session, store: VectorStore, batch: int = 50_000,
               between_batches: Callable[[], None] | None = None) -> SyncResult:
    """Apply every change committed after `store.applied_seq`, in log order, and advance it."""
    result = SyncResult()
    head = changelog.head(session)
    while head > store.applied_seq:
        changes = changelog.read_changes(session, encoder_id=store.encoder_id, after=store.applied_seq,
                                         limit=batch)
        _apply(session, store, changes, result)
        # Rows up to `head` were committed before head was read; a short read has seen all of them.
        store.applied_seq = changes.last_seq if changes.rows_read == batch else max(head, changes.last_seq)
        if between_batches is not None:
            between_batches()
    return result


def sync_shared(session: Session, store, lock: ApplyLock, batch: int = 50_000,
                wait_s: float | None = None) -> SyncResult:
    """`sync_store` for a collection several workers write (indexing/apply_lock.py): one applier at a time,
    starting from the position stored in the collection. `store` also needs `reload_position()`."""
    if changelog.head(session) <= store.applied_seq:
        return SyncResult()  # nothing new: no lock, no engine round trip
    if not lock.acquire(wait_s):
        store.reload_position()  # another worker is applying; serve what the collection holds
        return SyncResult(waited_out=True)
    try:
        store.reload_position()  # another worker may have applied past our cached position
        return sync_store(session, store, batch, between_batches=lock.renew)
    finally:
        lock.release()


def _apply(session: Session, store: VectorStore, changes: changelog.Changes, result: SyncResult) -> None:
    result.rows_read += changes.rows_read
    result.deleted += store.delete(changes.deletes)
    ids, vectors = changelog.fetch_vectors(session, encoder_id=store.encoder_id, ids=changes.upserts,
                                           dim=store.dim)
    store.upsert(ids, vectors)
    result.upserted += len(ids)
    # An upsert whose vector is gone by now was deleted later in the log; that delete will be read too.

"""Which vector collection a published pair serves, and having it ready before the pair row switches.

The active `model_pairs` row is the one switch on every backend: workers compare it before each job and open
what it names (FAISS: `index_path`; Milvus: `collection`). So publishing fills the new collection first
(where the publisher can reach it), then commits the row; workers move over on their next job, all to the
same collection, and the old one stays intact for a rollback.

- Milvus server or cluster (shared by every worker): the publisher creates the pair's collection and replays
  the whole change log into it under the collection's apply lock (indexing/apply_lock.py), so the first job
  after the switch searches a complete collection. Where the server has aliases, the encoder's alias is then
  pointed at it, as well: one stable name per encoder for whatever reads Milvus besides the workers.
- milvus-lite: each worker owns its own file, which no other process may open, so the publisher only names
  the collection; each worker creates and fills its own copy while switching (before serving from it).
- FAISS: no collection (NULL); the row's `index_path` is the switch, as before.

Only Milvus deployments import pymilvus (the imports below are inside the Milvus branches)."""
import logging

from sqlalchemy.orm import Session

from common.settings import Settings

log = logging.getLogger(__name__)


def pair_collection(settings: Settings, encoder_id: str, index_id: str | None) -> str | None:
    """The collection a new pair serves: one per (encoder, index build); None on FAISS."""
    if settings.vector_backend != "milvus":
        return None
    from indexing.backends.milvus import collection_name
    return collection_name(encoder_id, index_id or "live")


def default_collection(settings: Settings, encoder_id: str) -> str | None:
    """What workers serve with no pair row naming a collection (none published, or published before 0012)."""
    return pair_collection(settings, encoder_id, None)


def uses_shared_milvus(settings: Settings) -> bool:
    """Milvus on a server or cluster, whose collections every worker (and the publisher) reaches."""
    if settings.vector_backend != "milvus":
        return False
    from indexing.backends.milvus import shared_uri
    return shared_uri(settings)


def prepare(session: Session, settings: Settings, encoder_id: str, dim: int, collection: str | None) -> int | None:
    """Before the row switches: on a shared Milvus, create `collection` and replay the change log into it.
    Returns how many vectors it holds (None where there is nothing the publisher may fill)."""
    if collection is None:
        return None
    from indexing.backends.milvus import open_milvus_store, shared_uri
    if not shared_uri(settings):
        return None  # milvus-lite: every worker fills its own file when it switches
    from redis import Redis

    from indexing.apply_lock import ApplyLock
    from indexing.follower import sync_shared
    store = open_milvus_store(settings, encoder_id=encoder_id, dim=dim, collection=collection)
    lock = ApplyLock(Redis.from_url(settings.redis_url), settings.queue_name, collection)
    result = sync_shared(session, store, lock, wait_s=600.0)  # another applier may be filling it already
    log.info("collection %s ready: %d vectors at log position %d (%d log rows read)", collection,
             store.count(), store.applied_seq, result.rows_read)
    return store.count()


def point_serving_alias(settings: Settings, encoder_id: str, collection: str | None) -> bool:
    """After the row switched: point the encoder's alias at the serving collection, where the engine has
    aliases. False when it has none, or with milvus-lite (a worker's own file) or FAISS."""
    if collection is None:
        return False
    from indexing.backends.milvus import client_for, point_alias, shared_uri
    if not shared_uri(settings):
        return False
    return point_alias(client_for(settings), encoder_id, collection)

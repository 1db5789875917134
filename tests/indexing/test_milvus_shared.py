"""Milvus beyond one worker: a collection several workers write (one applier of the change log at a time),
the pair row naming the collection that serves, the per-encoder alias where the engine has aliases, and the
milvus-lite file each worker process takes for itself.

A Milvus server is not available here, so "several workers on one collection" is two `MilvusStore`s in
this process on one milvus-lite file (one client: a lite file serves one process, and a second client of the
same process is refused too). That is the state a server shares between hosts: the vectors and the log
position stored in the collection's properties; the apply lock is the real Redis lock workers take."""
import numpy as np
import pytest
from redis import Redis

from common.db import crud
from common.db.models import SourceImage
from common.db.session import new_session
from common.settings import get_settings
from indexing import changelog
from indexing.apply_lock import ApplyLock
from indexing.backends import milvus
from indexing.follower import sync_shared
from indexing.pair_collections import pair_collection, point_serving_alias
from tests.conftest import REDIS_URL
from tests.indexing.test_changelog import embed, make_images

DIM = 4


@pytest.fixture
def client(tmp_path):
    lite = milvus.connect(str(tmp_path / "shared.db"))
    yield lite
    lite.close()


class PausingLock(ApplyLock):
    """The real lock; `during` runs between two batches of the holder's replay, while it holds the lock."""
    during = staticmethod(lambda: None)

    def renew(self) -> None:
        super().renew()
        self.during()
        self.during = lambda: None


def test_one_applier_at_a_time_and_the_next_starts_from_the_stored_position(service_env, client):
    ids = make_images(3)
    with new_session() as session:
        embed(session, ids)
        session.commit()
    first = milvus.MilvusStore(client, encoder_id="enc", dim=DIM, build="shared")
    second = milvus.MilvusStore(client, encoder_id="enc", dim=DIM, build="shared")  # another worker's view
    redis = Redis.from_url(REDIS_URL)
    scope = service_env["ATTRIB_QUEUE_NAME"]
    first_lock, second_lock = PausingLock(redis, scope, first.name), ApplyLock(redis, scope, second.name)
    seen_meanwhile = {}

    def while_first_applies():
        with new_session() as session:  # the work is deleted while the first worker is mid-replay
            crud.delete_work(session, work=crud.get_work(session, work_id=session.get(SourceImage, ids[0]).work_id))
            session.commit()
            result = sync_shared(session, second, second_lock, wait_s=0)
        seen_meanwhile.update(waited_out=result.waited_out, rows_read=result.rows_read, seq=second.applied_seq)

    first_lock.during = while_first_applies
    with new_session() as session:
        sync_shared(session, first, first_lock, batch=1)  # one log row per batch: the pause comes after row 1
    assert seen_meanwhile == {"waited_out": True, "rows_read": 0, "seq": 1}  # applied nothing, read the position
    # The first applier went to the head it read when it began (3): image 1 went in before the delete, the
    # vectors of 2 and 3 were gone when it fetched them.
    assert first.applied_seq == 3 and first.count() == 1 and not redis.exists(first_lock.key)
    with new_session() as session:
        after = sync_shared(session, second, second_lock)
        head = changelog.head(session)
    # The second resumed from the position stored in the collection (3), not its own (1): only the deletes.
    assert (after.rows_read, after.deleted, second.applied_seq, head) == (3, 1, 6, 6)
    assert second.count() == first.count() == 0
    assert second.search(np.eye(1, DIM, dtype=np.float32), 3)[0].size == 0  # the deleted work never returns


def test_a_held_lock_is_exclusive_and_renewable(service_env):
    redis = Redis.from_url(REDIS_URL)
    scope = service_env["ATTRIB_QUEUE_NAME"]
    holder, other = (ApplyLock(redis, scope, "attrib_c", ttl_s=30) for _ in range(2))
    with holder:
        assert not other.acquire(wait_s=0)
        holder.renew()
        assert redis.pttl(holder.key) > 0
    assert other.acquire(wait_s=0)
    other.release()


def test_the_pair_row_names_one_collection_per_encoder_and_build(service_env, monkeypatch):
    assert pair_collection(get_settings(), "enc@1", "idx-1") is None  # FAISS serves index_path
    monkeypatch.setenv("ATTRIB_VECTOR_BACKEND", "milvus")
    get_settings.cache_clear()
    names = {pair_collection(get_settings(), encoder, build)
             for encoder in ("enc@1", "enc@2") for build in ("idx-1", "idx-2", None)}
    assert len(names) == 6 and all(len(name) <= 200 for name in names)  # fits model_pairs.collection


def test_alias_follows_the_serving_collection_where_the_engine_has_aliases(client):
    """milvus-lite 3.2.2 (installed here) has aliases, so the server path runs against it."""
    builds = [milvus.MilvusStore(client, encoder_id="enc", dim=DIM, build=f"idx-{i}") for i in (1, 2)]
    for offset, store in enumerate(builds):
        store.upsert(np.array([10 + offset]), np.eye(1, DIM, dtype=np.float32))
        store.count()  # flushes (lite)
    alias = milvus.alias_name("enc")
    assert milvus.supports_aliases(client)

    def served_through_alias() -> int:
        return client.search(alias, data=[[1.0, 0, 0, 0]], limit=1)[0][0]["id"]

    assert milvus.point_alias(client, "enc", builds[0].name) and served_through_alias() == 10
    assert milvus.point_alias(client, "enc", builds[1].name) and served_through_alias() == 11
    assert milvus.point_alias(client, "enc", builds[1].name)  # already there: a no-op
    assert client.describe_alias(alias)["collection_name"] == builds[1].name


def test_without_aliases_the_row_alone_switches(service_env, monkeypatch, tmp_path):
    """The fallback: an engine without aliases (older milvus-lite), and every milvus-lite deployment (a
    worker's own file, which the publisher may not open), get no alias; workers follow the pair row."""
    closed = milvus.connect(str(tmp_path / "closed.db"))
    closed.close()
    # An engine that refuses alias calls (here a closed connection: no alias-less engine installs from the
    # registries) means "no aliases", never an error in publish or rollback.
    assert not milvus.supports_aliases(closed)
    assert not milvus.point_alias(closed, "enc", "attrib_anything")
    monkeypatch.setenv("ATTRIB_VECTOR_BACKEND", "milvus")
    monkeypatch.setenv("ATTRIB_MILVUS_URI", str(tmp_path / "worker-0.db"))
    get_settings.cache_clear()
    assert not point_serving_alias(get_settings(), "enc", pair_collection(get_settings(), "enc", "idx-1"))
    assert not (tmp_path / "worker-0.db").exists()  # the publisher never opened a worker's lite file


def test_each_process_slot_is_its_own_lite_file(tmp_path):
    first, second = milvus.lite_file_for_this_process(tmp_path), milvus.lite_file_for_this_process(tmp_path)
    assert first.endswith("worker-0.db") and second.endswith("worker-1.db")


def test_collection_names_stay_apart_for_ids_that_clean_alike():
    assert milvus.collection_name("enc@1", "idx") != milvus.collection_name("enc_1", "idx")
    assert milvus.alias_name("enc@1") not in {milvus.collection_name("enc@1", b) for b in ("live", "idx")}

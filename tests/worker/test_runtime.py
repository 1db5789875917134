"""A worker's runtime: several workers see the same works through the change log; a restarted worker
loads the newest snapshot (memory-mapped) and replays the tail; a corrupt or foreign snapshot is never
served, the database rebuilds it; one writer at a time; crossing the ANN threshold swaps in a trained
index built off the job thread."""
import os
import threading

import numpy as np
import pytest
from redis import Redis

from common.db import crud
from common.db.session import new_session
from common.settings import get_settings
from common.storage import LocalStorage
from indexing.backends.faiss import FaissStore
from indexing.embedding import embed_source_images
from indexing.snapshots import WriterLock, latest_snapshots
from tests.conftest import REDIS_URL
from tests.factories import photo_bytes
from worker.runtime import Runtime


def register(client, subject: str) -> str:
    files = [("images", (f"{subject}{i}.jpg", photo_bytes(subject, i), "image/jpeg")) for i in (0, 1)]
    response = client.post("/sources", files=files, data={"title": subject, "rights_holder": "studio"})
    assert response.status_code == 201
    return response.json()["id"]


def embed_pending(runtime: Runtime) -> None:
    with new_session() as session:
        storage = LocalStorage(runtime.settings.storage_dir)
        embed_source_images(session, runtime.encoder, storage, crud.pending_images(session), 4)
        session.commit()


def load_runtime() -> Runtime:
    with new_session() as session:
        return Runtime.load(session, get_settings())


def sync(runtime: Runtime) -> None:
    with new_session() as session:
        runtime.sync(session)


def snapshot_dir(runtime: Runtime):
    key = latest_snapshots(LocalStorage(runtime.settings.storage_dir), runtime.encoder.encoder_id)[0]
    return LocalStorage(runtime.settings.storage_dir).path(key)


def test_two_workers_share_works_through_the_change_log(client):
    first, second = load_runtime(), load_runtime()
    dog = register(client, "dog")
    embed_pending(first)
    sync(first)
    sync(second)
    assert first.store.count() == second.store.count() == 2
    assert sorted(first.store.ids()) == sorted(second.store.ids())
    client.delete(f"/sources/{dog}")
    sync(second)
    assert second.store.count() == 0


def test_restarted_worker_loads_the_snapshot_and_replays_the_tail(client):
    runtime = load_runtime()
    register(client, "cat")
    embed_pending(runtime)
    sync(runtime)
    assert runtime.describe()["snapshot_saved_at"] is None
    key = runtime.snapshot(None)
    assert runtime.snapshot(None) is None  # nothing changed since: no second snapshot
    beat = runtime.describe()  # what the heartbeat carries to /metrics
    assert beat["index_type"] == runtime.store.factory and beat["snapshot_saved_at"] is not None
    register(client, "dog")  # after the snapshot: only in the log
    embed_pending(runtime)
    restarted = load_runtime()
    assert restarted.loaded_from == key and restarted.store.describe()["memory_mapped"]
    assert restarted.store.index_id == runtime.store.index_id
    sync(runtime)
    assert sorted(restarted.store.ids()) == sorted(runtime.store.ids()) and restarted.store.count() == 4
    assert restarted.store.applied_seq == runtime.store.applied_seq


@pytest.mark.parametrize("damage", ["garbage", "missing_file", "other_encoder"])
def test_damaged_snapshot_is_rebuilt_from_the_database(client, damage):
    runtime = load_runtime()
    register(client, "teapot")
    embed_pending(runtime)
    sync(runtime)
    runtime.snapshot(None)
    directory = snapshot_dir(runtime)
    base = directory.parent / "bases" / runtime.store.index_id
    if damage == "garbage":
        (base / "index.faiss").write_bytes(b"\x00" * 64)
    elif damage == "missing_file":
        (directory / "delta.npz").unlink()
    else:
        sidecar = directory / "index.json"
        sidecar.write_text(sidecar.read_text().replace(runtime.encoder.encoder_id, "someone-else@1"))
    rebuilt = load_runtime()
    assert rebuilt.loaded_from == "database"
    assert sorted(rebuilt.store.ids()) == sorted(runtime.store.ids())
    query = np.eye(1, runtime.encoder.dim, dtype=np.float32)
    assert rebuilt.store.search(query, 2)[0].tolist() == runtime.store.search(query, 2)[0].tolist()


def test_one_snapshot_writer_at_a_time(service_env):
    redis = Redis.from_url(REDIS_URL)
    first, second = (WriterLock(redis, service_env["ATTRIB_QUEUE_NAME"], "enc@test", owner, ttl_s=30)
                     for owner in ("w1", "w2"))
    try:
        assert first.acquire() and not second.acquire()
        assert first.acquire()  # the writer renews its own lock
        first.release()
        assert second.acquire()
    finally:
        second.release()


def test_crossing_the_threshold_swaps_in_a_trained_index(client, monkeypatch):
    monkeypatch.setenv("ATTRIB_ANN_THRESHOLD", "6")
    get_settings.cache_clear()
    writer, reader = load_runtime(), load_runtime()
    for subject in ("dog", "cat", "teapot"):
        register(client, subject)
    embed_pending(writer)
    sync(writer)
    sync(reader)
    assert writer.store.describe()["exact"] and writer.store.count() == 6  # serves exactly until rebuilt
    redis = Redis.from_url(REDIS_URL)
    scope = get_settings().queue_name
    lock_of = lambda owner: WriterLock(redis, scope, writer.encoder.encoder_id, owner, ttl_s=30)  # noqa: E731
    import indexing.live
    build, niceness = indexing.live.build_from_database, []

    def recorded(*args, **kwargs):
        niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return build(*args, **kwargs)
    monkeypatch.setattr(indexing.live, "build_from_database", recorded)
    writer.snapshot(lock_of("writer"))  # the writer's background step: train, build, snapshot, then map it
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert niceness == [min(19, caller + get_settings().index_rebuild_nice)]  # below the jobs' priority
    described = writer.store.describe()
    assert not described["exact"] and described["index_type"].startswith("IVF")
    assert described["rerank"]  # its shortlist is scored again exactly
    assert described["memory_mapped"] and writer.store.count() == 6
    try:
        assert reader.snapshot(lock_of("reader")) is None  # not the writer: writes nothing...
        assert reader.store.index_id == writer.store.index_id  # ...but picks up the new base
        assert reader.store.describe()["rerank"]  # with its re-rank vectors, fetched from storage
    finally:
        lock_of("writer").release()
    hits = writer.store.search(np.eye(1, writer.encoder.dim, dtype=np.float32), 6)[0][0]
    assert sorted(hits[hits >= 0].tolist()) == sorted(writer.store.ids().tolist())


def small_approximate_registry(client, monkeypatch) -> Runtime:
    """A writer with 6 vectors embedded, beside an exact base: approximate from 6 vectors (one IVF list
    at any size, so the index type holds as it grows) and renewed after 3 changes."""
    for name, value in (("ANN_THRESHOLD", "6"), ("ANN_LISTS", "1"), ("INDEX_COMPACT_AFTER", "3")):
        monkeypatch.setenv(f"ATTRIB_{name}", value)
    get_settings.cache_clear()
    writer = load_runtime()
    for subject in ("dog", "cat", "teapot"):
        register(client, subject)
    embed_pending(writer)
    return writer


def test_the_writer_folds_changes_into_its_trained_base(client, monkeypatch):
    """Past `compact_after` changes the base is renewed; while the registry stays within
    `retrain_growth` of what its quantiser was trained on, the changes are folded into a copy of the
    base (niced, no database read, no training) instead of a rebuild from the database."""
    writer = small_approximate_registry(client, monkeypatch)
    import indexing.live
    calls, build, fold = [], indexing.live.build_from_database, indexing.live.fold

    def recorded(what, function):
        def call(*args, **kwargs):
            calls.append((what, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
            return function(*args, **kwargs)
        return call
    monkeypatch.setattr(indexing.live, "build_from_database", recorded("database", build))
    monkeypatch.setattr(indexing.live, "fold", recorded("fold", fold))
    writer.snapshot(None)  # exact -> approximate: trained on the database's 6 vectors
    trained = writer.store
    assert [what for what, _ in calls] == ["database"] and trained.trained_on() == 6
    for subject in ("clock", "candle"):
        register(client, subject)
    embed_pending(writer)
    writer.snapshot(None)  # 4 changes, 10 vectors: within twice the 6 it was trained on
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert calls[1:] == [("fold", min(19, caller + get_settings().index_rebuild_nice))]
    folded = writer.store.describe()
    assert folded["index_id"] != trained.index_id and folded["index_type"] == trained.factory
    assert folded["trained_count"] == 6 and folded["base_count"] == 10 and folded["delta_count"] == 0
    assert folded["memory_mapped"]  # served from the snapshot it wrote
    restarted = load_runtime()
    assert restarted.store.index_id == folded["index_id"] and restarted.store.count() == 10
    hits = writer.store.search(np.eye(1, writer.encoder.dim, dtype=np.float32), 10)[0][0]
    assert sorted(hits[hits >= 0].tolist()) == sorted(writer.store.ids().tolist())
    for subject in ("can", "vase", "dog2"):  # 16 vectors: past twice 6, trained again from the database
        register(client, subject)
    embed_pending(writer)
    writer.snapshot(None)
    assert calls[-1][0] == "database" and writer.store.trained_on() == 16


def test_a_fold_that_cannot_read_its_base_rebuilds_from_the_database(client, monkeypatch):
    """The writer folds into a copy of the base read again from its file; when that file is gone (an
    operator cleaned the storage folder), the base is rebuilt from the database instead of the
    snapshot thread failing on every tick."""
    writer = small_approximate_registry(client, monkeypatch)
    writer.snapshot(None)
    assert writer.store.base_path is not None  # serving the stored base, mapped
    os.remove(writer.store.base_path)
    for subject in ("clock", "candle"):
        register(client, subject)
    embed_pending(writer)
    writer.snapshot(None)
    described = writer.store.describe()
    assert described["trained_count"] == 10 and described["base_count"] == 10 and described["delta_count"] == 0


def test_a_loaded_runtime_uses_the_configured_memory_layout(client, monkeypatch):
    """channels_last (1.28x on this CPU) is part of loading a runtime, so the runtime a worker reloads when
    a new pair is published keeps it; it used to be set once at worker start and lost on the first switch."""
    assert get_settings().channels_last and load_runtime().encoder.channels_last
    monkeypatch.setenv("ATTRIB_CHANNELS_LAST", "false")
    get_settings.cache_clear()
    assert not load_runtime().encoder.channels_last


def test_jobs_sync_while_the_snapshot_writes_a_new_base(client, monkeypatch):
    """The first snapshot of a base writes all of it (2.5 GB at 1M, 26 GB at 10M); it was written
    under the lock every job's sync takes, so attributions waited for it. Now only a copy of the
    changes is taken under the lock: here the base write is held open while a job syncs."""
    runtime = load_runtime()
    register(client, "cat")
    embed_pending(runtime)
    sync(runtime)
    writing, finish = threading.Event(), threading.Event()
    write_base = FaissStore._write_base

    def held_open(store, path):
        writing.set()
        assert finish.wait(60), "the test never let the base write finish"
        write_base(store, path)
    monkeypatch.setattr(FaissStore, "_write_base", held_open)
    keys = []
    writer = threading.Thread(target=lambda: keys.append(runtime.snapshot(None)))
    writer.start()
    try:
        assert writing.wait(60)
        assert not runtime.live._lock.locked()  # held for the whole write before
        register(client, "dog")
        embed_pending(runtime)
        sync(runtime)  # a job's sync, while the base is being written
        assert runtime.store.count() == 4
    finally:
        finish.set()
        writer.join(60)
    assert keys and keys[0] is not None
    seq_after_dog = runtime.store.applied_seq
    assert runtime.live.snapshot_seq < seq_after_dog  # the snapshot holds what was there when it began
    restarted = load_runtime()  # ...and a worker started from it replays the rest
    assert restarted.loaded_from == keys[0] and restarted.store.count() == 4
    assert restarted.store.applied_seq == seq_after_dog
    assert runtime.snapshot(None) is not None  # the next tick saves the rest (it used to think it had)

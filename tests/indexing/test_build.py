"""Building a base is memory-bounded whatever N is: vectors arrive in pages (from the database, keyset
by id) straight into the index, and the float16 re-rank rows go to an unlinked file, never to memory.
At 10M x 1280 those rows are 24 GiB; an in-memory copy could not exist on the machines we serve."""
import os
import uuid
from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import insert, update

from common.db.models import Embedding, ImageState, SourceImage, Work
from common.db.session import new_session
from indexing.backends.faiss import IndexParams, build_from_chunks, build_store, load_store
from indexing.store import build_from_database, live_vector_pages

APPROX = IndexParams(ann_threshold=100, ann_codes="Flat", nprobe=1024, rerank=200, retry_below=0.0)


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def fill(vectors: np.ndarray, deleted_every: int = 0) -> np.ndarray:
    """One image and vector per row (ids 1..n) over works of 10 images; every `deleted_every`-th work
    deleted. Returns the ids that stay live."""
    works = [uuid.uuid4() for _ in range(0, len(vectors), 10)]
    with new_session() as session:
        session.execute(insert(Work), [{"id": w, "title": "t", "rights_holder": "r"} for w in works])
        session.execute(insert(SourceImage), [
            {"id": i + 1, "work_id": works[i // 10], "content_sha256": f"{i:064d}", "storage_key": "k",
             "media_type": "image/jpeg", "byte_size": 1, "width": 1, "height": 1, "state": ImageState.embedded}
            for i in range(len(vectors))])
        session.execute(insert(Embedding), [{"image_id": i + 1, "encoder_id": "enc", "vector": v.tobytes()}
                                            for i, v in enumerate(vectors)])
        gone = works[::deleted_every] if deleted_every else []
        if gone:
            session.execute(update(Work).where(Work.id.in_(gone)).values(deleted_at=datetime.now(timezone.utc)))
        session.commit()
    return np.array([i + 1 for i in range(len(vectors)) if works[i // 10] not in gone])


def test_a_base_built_from_the_database_equals_one_built_in_memory(service_env, tmp_path):
    vectors, queries = unit_rows(730, 16), unit_rows(5, 16, seed=1)
    live = fill(vectors, deleted_every=7)
    assert 0 < len(live) < len(vectors)
    scratch = tmp_path / "scratch"
    with new_session() as session:
        pages = [ids for ids, _ in live_vector_pages(session, "enc", 16, page=64)]
        assert max(map(len, pages)) == 64 and np.concatenate(pages).tolist() == live.tolist()
        built = build_from_database(session, "enc", 16, APPROX, scratch=scratch)
    in_memory = build_store("enc", 16, live, vectors[live - 1], APPROX)
    assert built.factory == in_memory.factory == "IVF32,Flat" and built.base_ids.tolist() == live.tolist()
    stored = vectors[live - 1].astype(np.float16).astype(np.float32)  # what the re-rank rows hold
    brute = live[np.argsort(-(queries @ stored.T), axis=1, kind="stable")[:, :10]]
    assert built.search(queries, 10)[0].tolist() == in_memory.search(queries, 10)[0].tolist() == brute.tolist()
    assert list(scratch.iterdir()) == []  # the re-rank rows' file was unlinked at once
    built.save(tmp_path / "saved")
    loaded = load_store(tmp_path / "saved", "enc", mmap=True)
    assert np.load(tmp_path / "saved" / "vectors.npy").shape == (len(live), 16)
    assert loaded.search(queries, 10)[0].tolist() == in_memory.search(queries, 10)[0].tolist()


def test_rows_that_vanish_while_building_leave_a_smaller_valid_base(tmp_path):
    """The count comes first; works deleted before their page is read arrive as fewer rows."""
    vectors = unit_rows(500, 16)
    chunks = [(np.arange(0, 200), vectors[:200]), (np.arange(300, 500), vectors[300:])]
    store = build_from_chunks("enc", 16, 500, iter(chunks), lambda size: vectors[:size], APPROX)
    assert store.count() == 400 and store.base_ids.tolist() == list(range(200)) + list(range(300, 500))
    store.save(tmp_path)
    assert np.load(tmp_path / "vectors.npy").shape == (400, 16)  # the header says what was written
    loaded = load_store(tmp_path, "enc", mmap=True)
    assert loaded.search(vectors[[10, 400]], 1)[0].ravel().tolist() == [10, 400]


@pytest.mark.parametrize("chunks", [
    [(np.array([1, 3, 2]), np.zeros((3, 16)))],  # inside a chunk
    [(np.array([1, 5]), np.zeros((2, 16))), (np.array([5, 6]), np.zeros((2, 16)))],  # across chunks
    [(np.arange(200), np.zeros((200, 16)))],  # more than announced
], ids=["inside", "across", "too-many"])
def test_chunks_out_of_order_or_beyond_the_count_are_refused(chunks):
    """... and the failed build closes its rows' unlinked file: a worker that rebuilds in the background
    would otherwise hold its disk space (24 GiB at 10M) until it exits."""
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ValueError):
        build_from_chunks("enc", 16, 150, iter(chunks), lambda size: unit_rows(size, 16), APPROX)
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_the_lists_a_query_visits_grow_with_the_base():
    """A fixed 128 of 4,096 lists at 10M kept recall@10 at 0.903 (bench/results/scale/scale-10m.md);
    the share visited at 1M (1/8, and 1/4 on a retry) is kept for larger bases, smaller ones unchanged."""
    params = IndexParams()
    assert params.probes(100_000) == params.probes(1_000_000) == (128, 512)
    assert params.probes(10_000_000) == (512, 1024)
    assert IndexParams(retry_nprobe=0).probes(10_000_000) == (512, 0)  # a retry switched off stays off
    store = build_store("enc", 16, np.arange(3000), unit_rows(3000, 16), IndexParams(ann_threshold=100, nprobe=2,
                                                                                      retry_nprobe=3))
    assert store.factory.startswith("RR16,IVF64,") and (store.nprobe, store.retry_nprobe) == (8, 16)


def test_a_set_list_count_is_kept_within_one_list_per_64_vectors():
    assert IndexParams().factory(10_000_000, 1280) == "RR1280,IVF4096,PQ320x4fs"  # auto: about sqrt(N), at most 4,096
    assert IndexParams(lists=16384).factory(10_000_000, 1280) == "RR1280,IVF16384_HNSW32,PQ320x4fs"
    assert IndexParams(lists=16384).probes(10_000_000) == (2048, 4096)
    assert IndexParams(lists=2048).factory(1_000_000, 1280) == "RR1280,IVF2048,PQ320x4fs"
    assert IndexParams(lists=16384).factory(60_000, 1280) == "RR1280,IVF937,PQ320x4fs"  # 60,000 / 64: every list trainable
    assert IndexParams(lists=10**6).factory(10**8, 1280).startswith("RR1280,IVF32768_HNSW32,")  # 8 of 262,144 samples a list


def test_more_lists_than_a_flat_quantiser_takes_get_a_graph_trained_in_two_levels(monkeypatch, tmp_path):
    """Past FLAT_LISTS_MAX lists the centroids come from two-level k-means and sit in an HNSW graph (flat
    k-means over 16,384 centroids takes hours on 2 cores). Lowered here so that 64 lists take that path."""
    import indexing.backends.faiss as backend
    monkeypatch.setattr(backend, "FLAT_LISTS_MAX", 16)
    rng = np.random.default_rng(1)
    centres = unit_rows(100, 32, seed=2)
    vectors = centres[rng.integers(0, 100, 8000)] + 0.3 * unit_rows(8000, 32, seed=3)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    params = IndexParams(ann_threshold=100, ann_codes="PQ16x4fs", lists=64, nprobe=4, rerank=200, retry_below=0.0)
    store = build_store("enc", 32, np.arange(1, 8001), vectors, params)
    assert store.factory == "RR32,IVF64_HNSW32,PQ16x4fs" and store.nprobe == 8
    queries = vectors[:50] + 0.05 * unit_rows(50, 32, seed=4)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] + 1
    found = store.search(queries, 10)[0]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.tolist(), truth.tolist())])
    assert recall >= 0.8  # the graph hands the lists a query wants: a broken quantiser gives ~nprobe/nlist
    store.save(tmp_path)
    loaded = load_store(tmp_path, "enc", mmap=True)
    assert np.array_equal(loaded.search(queries, 10)[0], found)


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)  # SQLite reads one snapshot throughout
def test_a_vector_committed_during_the_build_never_pushes_a_listed_one_out(service_env, monkeypatch):
    """An image embedded late (a retry) gets a smaller id than the last listed one. Committed while the
    base trains, it must not take a listed vector's place: it reaches the store through the log."""
    import indexing.store as store_module
    vectors = unit_rows(400, 16)
    live = fill(vectors)
    with new_session() as session:  # image 7 loses its vector: it is embedded again during the build
        session.execute(Embedding.__table__.delete().where(Embedding.image_id == 7))
        session.commit()
    listed = live[live != 7]
    real_vectors_of = store_module._vectors_of

    def vectors_of_then_commit(*args, **kwargs):
        with new_session() as other:
            other.execute(insert(Embedding), [{"image_id": 7, "encoder_id": "enc", "vector": vectors[6].tobytes()}])
            other.commit()
        return real_vectors_of(*args, **kwargs)

    monkeypatch.setattr(store_module, "_vectors_of", vectors_of_then_commit)
    with new_session() as session:
        built = build_from_database(session, "enc", 16, APPROX)
    assert built.base_ids.tolist() == listed.tolist()

"""One contract, every vector backend (docs/design.md §3): what the worker relies on, whatever the engine.

A backend joins by adding a harness to `HARNESSES`: how to open a store for (encoder, build), how to
reopen it as a restarted worker would (from what the backend persisted, not from memory), and how to open
what a store persisted as if another encoder were serving (a pair row naming the wrong index).

milvus-lite serves one process per data file, so the Milvus harness keeps one client per test (its own
file under tmp_path) and reopens by closing that client and connecting again; nothing else opens the file.
"""
import importlib.util
import re

import numpy as np
import pytest

DIM = 8


def unit(rows: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class FaissHarness:
    """Stores live in memory as a worker holds them; reopen = save and load from disk, as a restart does."""
    checks_dim = False  # load_store checks the encoder id; a wrong dimension would only fail at search time

    def __init__(self, tmp_path):
        from indexing.backends import faiss as backend
        self.backend, self.root, self.live = backend, tmp_path / "faiss", {}

    def _dir(self, store):
        return self.root / re.sub(r"[^A-Za-z0-9._-]+", "_", store.encoder_id) / store.build

    def open(self, encoder_id: str = "enc-a", build: str = "live", dim: int = DIM):
        if (encoder_id, build) not in self.live:
            store = self.backend.empty_store(encoder_id, dim)
            store.build = build
            self.live[encoder_id, build] = store
        return self.live[encoder_id, build]

    def reopen(self, store):
        store.save(self._dir(store))
        loaded = self.backend.load_store(self._dir(store), store.encoder_id)
        loaded.build = store.build
        self.live[store.encoder_id, store.build] = loaded
        return loaded

    def open_existing(self, store, encoder_id: str, dim: int):
        store.save(self._dir(store))
        return self.backend.load_store(self._dir(store), encoder_id)

    def close(self):
        pass


class MilvusHarness:
    checks_dim = True

    def __init__(self, tmp_path):
        from indexing.backends import milvus
        self.milvus, self.uri = milvus, str(tmp_path / "vectors.db")
        self.client = milvus.connect(self.uri)

    def open(self, encoder_id: str = "enc-a", build: str = "live", dim: int = DIM):
        return self.milvus.MilvusStore(self.client, encoder_id=encoder_id, dim=dim, build=build)

    def reopen(self, store):
        self.client.close()
        self.client = self.milvus.connect(self.uri)
        return self.open(store.encoder_id, store.build, store.dim)

    def open_existing(self, store, encoder_id: str, dim: int):
        return self.milvus.MilvusStore(self.client, encoder_id=encoder_id, dim=dim, collection=store.name)

    def close(self):
        self.client.close()


HARNESSES = {"milvus": MilvusHarness}
if importlib.util.find_spec("indexing.backends.faiss"):  # the FAISS store (branch scaleidx) once it is there
    HARNESSES["faiss"] = FaissHarness


@pytest.fixture(params=sorted(HARNESSES))
def backend(request, tmp_path):
    harness = HARNESSES[request.param](tmp_path)
    yield harness
    harness.close()


def test_add_then_search_finds_each_vector_first(backend):
    store = backend.open()
    vectors = unit(20, 0)
    store.upsert(np.arange(100, 120), vectors)
    ids, scores = store.search(vectors[:5], k=3)
    assert store.count() == 20
    assert ids.shape == (5, 3) and ids[:, 0].tolist() == list(range(100, 105))
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_upsert_replaces_rather_than_duplicates(backend):
    store = backend.open()
    a, b = unit(2, 1)
    store.upsert(np.array([7]), a[None])
    store.upsert(np.array([7]), b[None])
    ids, scores = store.search(b[None], k=5)
    assert store.count() == 1
    assert ids[0].tolist() == [7] and scores[0, 0] == pytest.approx(1.0, abs=1e-4)


def test_delete_counts_only_present_ids_and_they_never_return(backend):
    store = backend.open()
    vectors = unit(10, 2)
    store.upsert(np.arange(10), vectors)
    assert store.delete(np.array([3, 4, 999])) == 2
    assert store.delete(np.array([3])) == 0
    ids, _ = store.search(vectors, k=10)
    assert store.count() == 8
    assert not {3, 4} & set(ids.ravel().tolist())


def test_search_on_small_or_empty_store_pads_nothing_it_does_not_have(backend):
    store = backend.open()
    ids, scores = store.search(unit(2, 3), k=5)
    assert ids.shape == (2, 0) and scores.shape == (2, 0)
    store.upsert(np.array([1, 2]), unit(2, 4))
    ids, _ = store.search(unit(1, 5), k=5)
    assert sorted(ids[0].tolist()) == [1, 2]


def test_wrong_shape_is_refused(backend):
    store = backend.open()
    with pytest.raises(ValueError):
        store.upsert(np.array([1, 2]), unit(1, 6))
    assert store.count() == 0


def test_deletes_and_position_survive_a_reopen(backend):
    """A restarted worker (another process, another host) must not see a deleted vector again."""
    store = backend.open()
    vectors = unit(6, 7)
    store.upsert(np.arange(6), vectors)
    store.delete(np.array([2]))
    store.applied_seq = 41
    reopened = backend.reopen(store)
    ids, _ = reopened.search(vectors, k=6)
    assert reopened.count() == 5 and reopened.applied_seq == 41
    assert 2 not in ids.ravel().tolist()


def test_milvus_position_is_shared_through_the_collection(tmp_path):
    """Two workers on one server share a collection: each re-reads where the other left it."""
    from indexing.backends.milvus import MilvusStore, connect
    client = connect(str(tmp_path / "shared.db"))
    try:
        first = MilvusStore(client, encoder_id="enc-a", dim=DIM)
        second = MilvusStore(client, encoder_id="enc-a", dim=DIM)
        first.applied_seq = 17
        assert second.applied_seq == 0 and second.reload_position() == 17 and second.index_id == first.name
    finally:
        client.close()


def test_a_rebuild_is_a_separate_collection_and_a_switch_never_resurrects(backend):
    """Publishing a pair switches to a new build; the old build keeps its own state until dropped."""
    old = backend.open(build="b1")
    vectors = unit(5, 8)
    old.upsert(np.arange(5), vectors)
    old.delete(np.array([0]))                        # work 0 deleted while b1 served
    new = backend.open(build="b2")                   # the rebuild is filled from the live set only
    new.upsert(np.arange(1, 5), vectors[1:])
    switched = backend.reopen(new)
    ids, _ = switched.search(vectors, k=5)
    assert switched.count() == 4 and 0 not in ids.ravel().tolist()
    assert backend.open(build="b1").count() == 4     # b1 untouched by b2


@pytest.mark.parametrize("encoder_id, dim", [("enc-b", DIM), ("enc-a", DIM * 2)], ids=["encoder", "dim"])
def test_what_another_encoder_made_is_refused(backend, encoder_id, dim):
    if dim != DIM and not backend.checks_dim:
        pytest.skip("this backend checks the encoder id only")
    store = backend.open(encoder_id="enc-a")
    store.upsert(np.array([1]), unit(1, 9))
    with pytest.raises(ValueError) as refused:
        backend.open_existing(store, encoder_id, dim)
    assert "enc-a" in str(refused.value)  # names the encoder that made it


def test_each_encoder_has_its_own_store(backend):
    first = backend.open(encoder_id="enc-a")
    first.upsert(np.array([1]), unit(1, 9))
    assert backend.open(encoder_id="enc-b").count() == 0 and first.count() == 1


def test_describe_names_backend_encoder_and_position(backend):
    store = backend.open()
    store.upsert(np.array([1, 2, 3]), unit(3, 10))
    info = store.describe()
    assert info["count"] == 3 and info["dim"] == DIM and info["encoder_id"] == "enc-a"
    assert info["backend"] in HARNESSES and "applied_seq" in info

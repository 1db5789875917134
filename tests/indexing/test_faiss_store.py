"""The FAISS vector store: exact below the threshold, trained IVF above it; upserts and deletes land
beside the base (delta + mask) so their cost does not depend on its size; self-describing files that
load memory-mapped."""
import json

import numpy as np
import pytest

from indexing.backends import faiss as backend
from indexing.backends.faiss import (
    BASE_SCAN_THREADS,
    DELTA_SCAN_THREADS,
    IndexParams,
    build_store,
    empty_store,
    load_store,
    omp_threads,
    openmp_threads,
)
from indexing.vectorstore import IndexCorrupt, IndexEncoderMismatch, VectorStore

EXACT = IndexParams(ann_threshold=10**9)
APPROX = IndexParams(ann_threshold=100, ann_codes="Flat", nprobe=1024)  # every list visited: exact ranking


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("params", [EXACT, APPROX], ids=["exact", "ivf"])
def test_search_matches_brute_force_after_upserts_and_deletes(params):
    vectors = unit_rows(400, 16)
    store = build_store("enc", 16, np.arange(400) + 100, vectors, params)
    assert isinstance(store, VectorStore) and store.describe()["exact"] == (params is EXACT)
    store.upsert(np.array([100, 1000]), unit_rows(2, 16, seed=1))  # replace a base vector, add a new one
    store.delete(np.array([101, 102, 5]))
    truth = {i + 100: v for i, v in enumerate(vectors)} | dict(zip([100, 1000], unit_rows(2, 16, seed=1)))
    for gone in (101, 102):
        truth.pop(gone)
    assert store.count() == len(truth) == 399
    ids = np.array(list(truth)); matrix = np.stack(list(truth.values()))
    query = unit_rows(3, 16, seed=2)
    found, scores = store.search(query, 10)
    expected = ids[np.argsort(-(query @ matrix.T), axis=1)[:, :10]]
    assert found.tolist() == expected.tolist()
    assert not {101, 102} & set(store.search(query, 400)[0].ravel().tolist())


def test_search_trims_k_and_handles_an_empty_store():
    store = empty_store("enc", 4)
    assert store.search(unit_rows(1, 4), 5)[0].shape == (1, 0)
    store.upsert(np.array([1, 2]), np.eye(4, dtype=np.float32)[:2])
    store.upsert(np.array([1]), np.eye(4, dtype=np.float32)[2:3])
    assert store.count() == 2 and store.search(np.eye(4, dtype=np.float32)[2:3], 1)[0].tolist() == [[1]]
    assert store.delete(np.array([2, 99])) == 1 and store.ids().tolist() == [1]
    assert store.search(unit_rows(1, 4), 50)[0].shape == (1, 1)


def test_one_query_scans_the_delta_on_one_thread_and_leaves_the_setting_as_it_was(monkeypatch):
    """With two OpenMP threads on the delta one query took 39 ms instead of 16 (20,000 x 1280, 2 cores,
    bench.delta_cost): one query's delta scan runs on one thread, a batch on FAISS's default, and the
    caller's own setting comes back either way."""
    base, delta = unit_rows(200, 16), unit_rows(100, 16, seed=1)
    store = build_store("enc", 16, np.arange(200), base, EXACT)
    store.upsert(np.arange(1000, 1100), delta)
    seen = []
    search = store.delta.search

    def recorded(*args, **kwargs):
        seen.append(openmp_threads())
        return search(*args, **kwargs)
    monkeypatch.setattr(store.delta, "search", recorded)
    with omp_threads(2):
        one = store.search(unit_rows(1, 16, seed=2), 5)
        store.search(unit_rows(40, 16, seed=3), 5)  # a batch: FAISS decides
        assert seen == [DELTA_SCAN_THREADS, 2] == [1, 2]
        assert openmp_threads() == 2
    ids, query = np.concatenate([np.arange(200), np.arange(1000, 1100)]), unit_rows(1, 16, seed=2)
    assert one[0].tolist() == [ids[np.argsort(-(np.vstack([base, delta]) @ query[0]))[:5]].tolist()]


def test_one_query_searches_the_base_on_one_thread_too(monkeypatch):
    """A rotated base's single query took twice as long on FAISS's two OpenMP threads as on one (2 cores:
    the team woken for the rotation and the lists, then spinning); a batch keeps FAISS's default."""
    store = build_store("enc", 32, np.arange(3000), unit_rows(3000, 32),
                        IndexParams(ann_threshold=100, rerank=100, retry_below=0.0))
    assert store.factory.startswith("RR32,")
    store.search(unit_rows(1, 32, seed=9), 5)  # the store finds its IVF before the base is swapped below
    seen, search = [], store.base.search

    def recorded(*args, **kwargs):
        seen.append(openmp_threads())
        return search(*args, **kwargs)
    monkeypatch.setattr(store, "base", type("Recorded", (), {"search": staticmethod(recorded)})())
    with omp_threads(2):
        store.search(unit_rows(1, 32, seed=2), 5)
        store.search(unit_rows(40, 32, seed=3), 5)
        assert seen == [BASE_SCAN_THREADS, 2] == [1, 2]
        assert openmp_threads() == 2


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="shape"):
        empty_store("enc", 4).upsert(np.array([1]), np.zeros((1, 5), np.float32))


@pytest.mark.parametrize("params", [EXACT, APPROX], ids=["exact", "ivf"])
def test_save_load_memory_mapped_round_trip(tmp_path, params):
    store = build_store("enc@1", 8, np.arange(300), unit_rows(300, 8), params, applied_seq=42)
    store.upsert(np.array([7, 999]), unit_rows(2, 8, seed=3))
    store.delete(np.array([8]))
    store.save(tmp_path)
    sidecar = json.loads((tmp_path / "index.json").read_text())
    assert sidecar["encoder_id"] == "enc@1" and sidecar["count"] == 300 and sidecar["applied_seq"] == 42
    assert sidecar["factory"] == ("IDMap2,Flat" if params is EXACT else "IVF16,Flat")
    loaded = load_store(tmp_path, "enc@1", mmap=True)
    assert loaded.describe()["memory_mapped"] and loaded.index_id == store.index_id
    query = unit_rows(2, 8, seed=4)
    assert loaded.search(query, 5)[0].tolist() == store.search(query, 5)[0].tolist()
    loaded.upsert(np.array([1000]), unit_rows(1, 8, seed=5))  # a read-only mapped base still takes changes
    assert loaded.count() == 301


def test_saving_streams_the_base_instead_of_copying_it_in_memory(tmp_path):
    """At 10M the codes are gigabytes: the snapshot writer once serialised the base into memory and copied
    that into bytes (three copies at once). Python-side allocations while saving stay far below the base;
    a memory-mapped base (a loaded snapshot) is copied file to file, byte for byte."""
    import tracemalloc
    store = build_store("enc", 64, np.arange(40_000), unit_rows(40_000, 64), EXACT)
    tracemalloc.start()
    try:
        store.save(tmp_path / "a")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    base_size = (tmp_path / "a" / "index.faiss").stat().st_size
    assert base_size > 10 * 2**20 and peak < base_size / 4
    loaded = load_store(tmp_path / "a", "enc", mmap=True)
    loaded.save(tmp_path / "b")
    assert (tmp_path / "b" / "index.faiss").read_bytes() == (tmp_path / "a" / "index.faiss").read_bytes()
    query = unit_rows(2, 64, seed=1)
    assert load_store(tmp_path / "b", "enc").search(query, 5)[0].tolist() == store.search(query, 5)[0].tolist()


def test_describe_says_whether_the_loaded_base_is_really_mapped(tmp_path):
    """Flat codes and IVF lists are mapped from the snapshot (shared by a host's workers); FAISS reads
    4-bit fast-scan lists into the process, so such a base does not claim to be mapped."""
    from pathlib import Path
    for name, params, mapped in (("flat", APPROX, True),
                                 ("fast-scan", IndexParams(ann_threshold=100, rerank=0), False)):
        build_store("enc", 32, np.arange(3000), unit_rows(3000, 32), params).save(tmp_path / name)
        loaded = load_store(tmp_path / name, "enc", mmap=True)
        assert loaded.describe()["memory_mapped"] is mapped, name
        # checked against the process's mappings, so a FAISS that starts mapping fast-scan lists shows here
        assert (str(tmp_path / name / "index.faiss") in Path("/proc/self/maps").read_text()) is mapped, name


def test_loading_with_another_encoder_is_refused(tmp_path):
    empty_store("enc@1", 8).save(tmp_path)
    with pytest.raises(IndexEncoderMismatch):
        load_store(tmp_path, "enc@2")


def test_corrupt_index_is_detected(tmp_path):
    build_store("enc@1", 8, np.arange(3), unit_rows(3, 8), EXACT).save(tmp_path)
    (tmp_path / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexCorrupt):
        load_store(tmp_path, "enc@1")


def test_needs_rebuild_when_crossing_the_threshold_or_after_many_changes():
    params = IndexParams(ann_threshold=50, compact_after=10)
    store = build_store("enc", 8, np.arange(40), unit_rows(40, 8), params)
    assert not store.needs_rebuild(params)
    store.upsert(np.arange(100, 105), unit_rows(5, 8, seed=1))
    assert not store.needs_rebuild(params)
    store.upsert(np.arange(200, 206), unit_rows(6, 8, seed=2))  # 51 vectors, 11 changes
    assert store.needs_rebuild(params)
    rebuilt = build_store("enc", 8, store.ids(), unit_rows(51, 8), params)
    assert rebuilt.factory.startswith("IVF") and not rebuilt.needs_rebuild(params)


def test_queries_far_from_everything_are_searched_again_with_more_lists(tmp_path):
    """One list per query misses neighbours of random queries; the retry (every list, for queries whose
    best score is below `retry_below`) finds the exact top 10, and it survives a save and a load."""
    vectors, queries = unit_rows(3000, 16), unit_rows(20, 16, seed=3)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    plain = IndexParams(ann_threshold=100, ann_codes="Flat", nprobe=1, retry_below=0.0)
    retried = IndexParams(ann_threshold=100, ann_codes="Flat", nprobe=1, retry_below=1.01, retry_nprobe=4096)
    missed = build_store("enc", 16, np.arange(3000), vectors, plain).search(queries, 10)[0]
    assert missed.tolist() != expected.tolist()  # one list is not enough for these queries
    store = build_store("enc", 16, np.arange(3000), vectors, retried)
    assert store.search(queries, 10)[0].tolist() == expected.tolist()
    store.save(tmp_path)
    loaded = load_store(tmp_path, "enc", mmap=True)
    assert loaded.describe()["retry_below"] == 1.01
    assert loaded.search(queries, 10)[0].tolist() == expected.tolist()


def test_compressed_codes_shortlist_and_the_exact_rerank_restores_the_ranking(tmp_path):
    """The default approximate base holds 4-bit PQ codes (8x smaller than SQ8); alone they misrank, the
    re-rank against the float16 copies on disk gives brute force's top 10 over those copies (float16
    rounding may swap near ties of the float32 ranking). The copies are read per
    query from vectors.npy, never counted as index memory, and masked ids stay hidden."""
    vectors, queries = unit_rows(3000, 32), unit_rows(20, 32, seed=3)
    stored = vectors.astype(np.float16).astype(np.float32)
    expected = np.argsort(-(queries @ stored.T), axis=1, kind="stable")[:, :10]
    codes_only = build_store("enc", 32, np.arange(3000), vectors,
                             IndexParams(ann_threshold=100, nprobe=4096, rerank=0, retry_below=0.0))
    assert codes_only.factory == "RR32,IVF64,PQ8x4fs" and codes_only.describe()["rerank"] == 0
    assert codes_only.search(queries, 10)[0].tolist() != expected.tolist()  # the codes alone misrank
    # half the base re-ranked: these isotropic vectors are PQ's worst case (one of 200 true top-10
    # rows fell past the codes' best 1,000 once the default rotation changed the codes)
    params = IndexParams(ann_threshold=100, nprobe=4096, rerank=1500, retry_below=0.0)
    store = build_store("enc", 32, np.arange(3000), vectors, params)
    found, scores = store.search(queries, 10)
    assert found.tolist() == expected.tolist()
    assert np.allclose(scores, np.take_along_axis(queries @ stored.T, expected, 1), atol=1e-5)
    store.save(tmp_path)
    assert (tmp_path / "vectors.npy").stat().st_size > 3000 * 32 * 2
    loaded = load_store(tmp_path, "enc", mmap=True)
    assert type(loaded.rows).__name__ == "FileRows" and loaded.describe()["rerank"] == 1500
    assert loaded.search(queries, 10)[0].tolist() == expected.tolist()
    assert loaded.base_bytes_size() < (tmp_path / "vectors.npy").stat().st_size
    loaded.delete(expected[:, 0])
    assert not set(expected[:, 0].tolist()) & set(loaded.search(queries, 10)[0].ravel().tolist())


def test_a_truncated_rerank_file_is_refused(tmp_path):
    params = IndexParams(ann_threshold=100, rerank=50)
    build_store("enc", 32, np.arange(500), unit_rows(500, 32), params).save(tmp_path)
    data = (tmp_path / "vectors.npy").read_bytes()
    (tmp_path / "vectors.npy").write_bytes(data[:len(data) // 2])
    with pytest.raises(IndexCorrupt):
        load_store(tmp_path, "enc")


def test_a_random_rotation_spreads_a_skewed_variance_over_the_pq_codes(tmp_path):
    """Real features keep most of their variance in a few dimensions; PQ gives every 4 dimensions the
    same 4 bits, so without a rotation most sub-quantisers code near-constants and the few that matter
    are coded coarsely. The codes alone (no re-rank) of the same vectors, with and without `RR<dim>,`."""
    rng = np.random.default_rng(5)
    scale = np.r_[np.full(8, 6.0), np.full(56, 0.2)].astype(np.float32)  # 8 of 64 dimensions carry it
    vectors = rng.normal(size=(6000, 64)).astype(np.float32) * scale
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:100] + 0.1 * unit_rows(100, 64, seed=6) * scale / 6
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]

    def codes_recall(rotate: bool) -> float:
        params = IndexParams(ann_threshold=100, nprobe=4096, rerank=0, retry_below=0.0, rotate=rotate)
        store = build_store("enc", 64, np.arange(6000), vectors, params)
        assert store.factory == ("RR64," if rotate else "") + "IVF64,PQ16x4fs"
        found = store.search(queries, 10)[0]
        return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
    plain, rotated = codes_recall(False), codes_recall(True)
    assert rotated > plain + 0.1, (plain, rotated)
    store = build_store("enc", 64, np.arange(6000), vectors, IndexParams(ann_threshold=100, rerank=500))
    store.save(tmp_path)  # the rotation is part of the saved base: a loaded store searches the same
    loaded = load_store(tmp_path, "enc", mmap=True)
    assert loaded.factory.startswith("RR64,") and loaded.search(queries, 10)[0].tolist() == store.search(queries, 10)[0].tolist()


@pytest.mark.parametrize("codes", ["PQ8x4fs", "SQ8"])
def test_one_query_over_many_codes_splits_its_probes_over_the_team(monkeypatch, codes):
    """FAISS scans one query's lists on one thread whatever its team (1.25M random codes: ~28 ms on 2 cores
    against 16 split in two): past PARALLEL_SCAN_FROM codes the probes are split (fast-scan implem 14, IVF
    parallel_mode 1) on FAISS's threads, with the same results, and the index's own setting comes back."""
    vectors, queries = unit_rows(4000, 32), unit_rows(3, 32, seed=5)
    store = build_store("enc", 32, np.arange(4000), vectors,
                        IndexParams(ann_threshold=100, lists=16, nprobe=8, ann_codes=codes, rerank=0, retry_below=0.0))
    field_name = "implem" if codes.endswith("fs") else "parallel_mode"
    store._codes_scanned(1)  # the store finds its IVF (this test module imports no faiss: the boundary test)
    ivf = store._ivf
    before = getattr(ivf, field_name)
    alone = [store.search(q[None], 10) for q in queries]
    seen, search = [], store.base.search

    def recorded(*args, **kwargs):
        seen.append((openmp_threads(), getattr(ivf, field_name)))
        return search(*args, **kwargs)
    monkeypatch.setattr(store, "base", type("Recorded", (), {"search": staticmethod(recorded)})())
    monkeypatch.setattr(backend, "PARALLEL_SCAN_FROM", 8 * 4000 / 16)  # 8 of 16 lists: 2,000 codes
    with omp_threads(2):
        split = [store.search(q[None], 10) for q in queries]
        assert openmp_threads() == 2
    assert seen[0] == (2, 14 if codes.endswith("fs") else 1)
    assert getattr(ivf, field_name) == before
    for (ids, scores), (split_ids, split_scores) in zip(alone, split):  # 4-bit codes tie: order within a tie may differ
        np.testing.assert_allclose(scores, split_scores, rtol=1e-5)
        assert len(set(ids[0].tolist()) & set(split_ids[0].tolist())) >= 9
    hidden = int(split[0][0][0, 0])
    store.delete(np.array([hidden]))  # masked in the base: the split scan keeps to the search's id selector
    with omp_threads(2):
        after = store.search(queries[:1], 10)[0][0]
    assert hidden not in after.tolist() and len(set(after.tolist()) & set(split[0][0][0, 1:].tolist())) >= 8
    monkeypatch.setattr(backend, "PARALLEL_SCAN_FROM", 8 * 4000 / 16 + 1)  # one code short: one thread
    seen.clear()
    with omp_threads(2):
        store.search(queries[:1], 10)
    assert seen == [(BASE_SCAN_THREADS, before)]


def test_split_searches_from_two_threads_leave_the_index_as_they_found_it(monkeypatch):
    """The split is a setting of the index, not of the thread: two threads that overlapped would each
    restore what they found, and the last could leave implem 14 behind for every batch after (1.7x
    slower). Here thread A waits inside its search for B to start its own; split searches take turns."""
    import threading
    store = build_store("enc", 32, np.arange(4000), unit_rows(4000, 32),
                        IndexParams(ann_threshold=100, lists=16, nprobe=8, rerank=0, retry_below=0.0))
    store._codes_scanned(1)
    ivf, search = store._ivf, store.base.search
    before = ivf.implem
    b_searching, a_done = threading.Event(), threading.Event()

    def recorded(*args, **kwargs):
        if threading.current_thread().name == "A":
            b_searching.wait(1.0)  # with turns B cannot start before A is out: A gives up waiting
        else:
            b_searching.set()
            a_done.wait(1.0)
        return search(*args, **kwargs)
    monkeypatch.setattr(store, "base", type("Recorded", (), {"search": staticmethod(recorded)})())
    monkeypatch.setattr(backend, "PARALLEL_SCAN_FROM", 0)

    def a():
        store.search(unit_rows(1, 32, seed=1), 5)
        a_done.set()
    threads = [threading.Thread(target=a, name="A"),
               threading.Thread(target=lambda: store.search(unit_rows(1, 32, seed=2), 5), name="B")]
    threads[0].start()
    while ivf.implem == before:  # A is inside its split search
        pass
    threads[1].start()
    for t in threads:
        t.join()
    assert ivf.implem == before

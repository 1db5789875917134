"""Folding a store's changes into its base: the folded base holds exactly the store's live vectors (ids,
re-rank rows, search results), keeps the trained quantiser, leaves the old store untouched, and is
only chosen where it gives the base a rebuild would give."""
import dataclasses

import numpy as np
import pytest

from indexing.backends.exact_rows import DTYPE
from indexing.backends.faiss import IndexParams, build_store, load_store
from indexing.backends.faiss_fold import can_fold, fold
from tests.indexing.test_faiss_store import unit_rows

EXACT = IndexParams(ann_threshold=10**9)
IVF_FLAT = IndexParams(ann_threshold=100, ann_codes="Flat", nprobe=4096, retry_below=0.0)
# The default codes (4-bit PQ, fast-scan) with every list visited and every candidate re-ranked:
# exact over the float16 copies, so a wrong row in the merged rows file changes the answer.
PQ_RERANK = IndexParams(ann_threshold=100, nprobe=4096, rerank=5000, retry_below=0.0)


def changed_store(params: IndexParams, tmp_path, mapped: bool):
    """A 3,000-vector store with changes beside its base (replacements, new ids, deletes), and the
    truth {id: vector} it should hold."""
    vectors = unit_rows(3000, 32)
    store = build_store("enc", 32, np.arange(3000) * 2, vectors, params, scratch=tmp_path)
    if mapped:  # a worker serves the stored copy: FAISS cannot clone mapped lists
        store.save(tmp_path / "saved")
        store = load_store(tmp_path / "saved", "enc", mmap=True)
    truth = dict(zip((np.arange(3000) * 2).tolist(), vectors))
    replaced, added = np.array([0, 10, 5998]), np.array([1, 777, 9001, 9003])
    new = unit_rows(7, 32, seed=5)
    store.upsert(np.concatenate([replaced, added]), new)
    truth.update(zip(np.concatenate([replaced, added]).tolist(), new))
    store.delete(np.array([2, 4, 777, 4000]))
    for gone in (2, 4, 777, 4000):
        truth.pop(gone)
    return store, truth


@pytest.mark.parametrize("mapped", [False, True], ids=["built", "loaded"])
@pytest.mark.parametrize("params", [EXACT, IVF_FLAT, PQ_RERANK], ids=["exact", "ivf-flat", "pq-rerank"])
def test_a_folded_base_holds_the_live_vectors_and_answers_as_before(params, mapped, tmp_path):
    store, truth = changed_store(params, tmp_path, mapped)
    queries = unit_rows(20, 32, seed=9)
    before = store.search(queries, 10)
    state = store.state()
    folded = fold(store, state, params, scratch=tmp_path)

    ids = np.array(sorted(truth))
    assert folded.base_ids.tolist() == ids.tolist()
    assert folded.delta.ntotal == 0 and not folded.masked and folded.count() == len(truth) == 3000
    assert folded.applied_seq == state.applied_seq and folded.index_id != store.index_id
    assert folded.factory == store.factory and folded.trained_on() == 3000
    if folded.rows is not None:  # the merged rows file: each id's own vector, in id order
        expected = np.stack([truth[i] for i in ids.tolist()]).astype(DTYPE)
        assert np.array_equal(folded.rows.take(np.arange(len(ids))), expected.astype(np.float32))
    after = folded.search(queries, 10)
    assert after[0].tolist() == before[0].tolist()
    assert np.allclose(after[1], before[1], atol=1e-3)
    assert store.search(queries, 10)[0].tolist() == before[0].tolist()  # the old store still serves as it was
    assert store.delta.ntotal == 7 - 1  # (777 was added, then deleted) and its base is untouched
    folded.save(tmp_path / "folded")
    reloaded = load_store(tmp_path / "folded", "enc", mmap=True)
    assert reloaded.trained_on() == 3000 and reloaded.search(queries, 10)[0].tolist() == before[0].tolist()


def test_a_fold_keeps_the_tail_to_the_log_replay():
    """The fold is made from a copy of the changes (`state`); what lands after it is the swap's replay."""
    store = build_store("enc", 16, np.arange(300), unit_rows(300, 16), IVF_FLAT)
    store.upsert(np.array([1000]), unit_rows(1, 16, seed=1))
    state = store.state()
    store.upsert(np.array([1001]), unit_rows(1, 16, seed=2))  # after the copy: not in the fold
    folded = fold(store, state, IVF_FLAT)
    assert 1000 in folded.base_ids and 1001 not in folded.ids() and folded.count() == 301


def test_fold_only_where_it_gives_the_base_a_rebuild_would():
    params = IndexParams(ann_threshold=2000, ann_codes="Flat", compact_after=10)
    store = build_store("enc", 16, np.arange(3000), unit_rows(3000, 16), params)
    store.upsert(np.arange(10_000, 10_020), unit_rows(20, 16, seed=1))
    assert store.needs_rebuild(params) and can_fold(store, params)
    assert not can_fold(store, dataclasses.replace(params, retrain_growth=0))  # switched off: always rebuild
    assert not can_fold(store, dataclasses.replace(params, ann_codes="SQ8"))  # another index type
    assert not can_fold(store, dataclasses.replace(params, ann_threshold=4000))  # back to exact search
    assert not can_fold(store, dataclasses.replace(params, lists=128))  # another number of lists
    assert not can_fold(store, dataclasses.replace(params, rerank=0))  # its re-rank rows no longer wanted
    pq = dataclasses.replace(params, ann_codes="PQ4x4fs", rotate=False)  # a base from before the rotation:
    unrotated = build_store("enc", 16, np.arange(3000), unit_rows(3000, 16), pq)
    unrotated.upsert(np.arange(10_000, 10_020), unit_rows(20, 16, seed=1))
    assert can_fold(unrotated, pq) and not can_fold(unrotated, dataclasses.replace(pq, rotate=True))  # rebuilt

    grown = build_store("enc", 16, np.arange(3000), unit_rows(3000, 16), params)
    grown.upsert(np.arange(10_000, 13_001), unit_rows(3001, 16, seed=2))  # 6,001 vectors: past twice 3,000
    assert grown.factory == params.factory(grown.count(), 16)  # the same type, yet trained on too few
    assert not can_fold(grown, params) and can_fold(grown, dataclasses.replace(params, retrain_growth=2.5))
    folded = fold(grown, grown.state(), dataclasses.replace(params, retrain_growth=2.5))
    assert folded.trained_on() == 3000  # a fold never resets what the quantiser was trained on
    assert not can_fold(folded, params)

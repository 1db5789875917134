"""Pseudo-pairs from stored vectors: sampling stays bounded, own copies are left out, and queries drift
to the difficulty of real (unlabelled) traffic."""
import numpy as np
import pytest

from training.pseudo_pairs import Registry, drift_to_traffic, pseudo_pair_candidates, sample_rows


def registry(n=40, d=16, seed=0):
    rng = np.random.default_rng(seed)
    vectors = (rng.normal(size=(n, d)) + 0.3).astype(np.float32)  # a shared direction, like real features
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Registry(vectors, np.array([f"w{i // 2}" for i in range(n)], dtype=object))


def test_drift_brings_each_best_score_down_to_a_traffic_score():
    reg = registry()
    queries = reg.vectors[:10] + 0.05
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    before = (queries @ reg.vectors.T).max(axis=1)
    target = np.array([0.8])
    drifted = drift_to_traffic(queries, reg, target)
    after = (drifted @ reg.vectors.T).max(axis=1)
    np.testing.assert_allclose(np.linalg.norm(drifted, axis=1), 1.0, rtol=1e-5)
    assert np.all(after <= before + 1e-6)
    assert np.allclose(after[before > 0.8], 0.8, atol=1e-3)
    assert drift_to_traffic(queries, reg, np.array([])) is queries  # no traffic: unchanged


def test_own_copy_left_out_when_the_work_has_other_images():
    reg = registry()
    table = pseudo_pair_candidates(reg.vectors[[0]], [0], reg, hits=40)
    assert table.truth[0] == "w0" and table.truth_mask()[0].sum() == 1  # only image 1 of w0 remains
    single = Registry(reg.vectors[::2], np.array([f"w{i}" for i in range(20)], dtype=object))
    assert pseudo_pair_candidates(single.vectors[[0]], [0], single, hits=5).works[0, 0] == "w0"


@pytest.mark.parametrize("size", [10, 1000])
def test_sampling_is_bounded_and_keeps_each_query_work(size):
    works = [f"w{i // 3}" for i in range(size)]
    query_rows, pool_rows = sample_rows(works, queries=5, pool=50, seed=1)
    assert len(query_rows) == min(5, size) and len(pool_rows) <= 50 + 5 * 3
    pooled = {works[r] for r in pool_rows}
    assert all(works[r] in pooled for r in query_rows) and set(query_rows) <= set(pool_rows)

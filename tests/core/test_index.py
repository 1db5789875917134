"""The FAISS index: exact inner-product search, replace/remove by id, self-describing files."""
import json

import numpy as np
import pytest

from core.index import IndexCorrupt, IndexEncoderMismatch, VectorIndex, load_index


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_search_matches_brute_force_and_trims_padding():
    index = VectorIndex("enc", 16)
    vectors = unit_rows(50, 16)
    index.add(np.arange(100, 150), vectors)
    query = unit_rows(1, 16, seed=1)
    ids, scores = index.search(query, 5)
    expected = np.argsort(-(vectors @ query[0]))[:5] + 100
    assert ids[0].tolist() == expected.tolist()
    np.testing.assert_allclose(scores[0], np.sort(vectors @ query[0])[::-1][:5], rtol=1e-5)
    ids, _ = index.search(query, 500)
    assert ids.shape == (1, 50) and (ids >= 0).all()


def test_readding_replaces_and_remove_deletes():
    index = VectorIndex("enc", 4)
    index.add(np.array([1, 2]), np.eye(4, dtype=np.float32)[:2])
    index.add(np.array([1]), np.eye(4, dtype=np.float32)[2:3])
    assert len(index) == 2
    assert index.search(np.eye(4, dtype=np.float32)[2:3], 1)[0][0].tolist() == [1]
    assert index.remove(np.array([2, 99])) == 1
    assert index.ids().tolist() == [1]


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="shape"):
        VectorIndex("enc", 4).add(np.array([1]), np.zeros((1, 5), np.float32))


def test_save_load_round_trip_with_sidecar(tmp_path):
    index = VectorIndex("enc@1", 8)
    index.add(np.arange(10), unit_rows(10, 8))
    index.save(tmp_path)
    sidecar = json.loads((tmp_path / "index.json").read_text())
    assert sidecar["encoder_id"] == "enc@1" and sidecar["count"] == 10 and sidecar["factory"] == "IDMap2,Flat"
    loaded = load_index(tmp_path, "enc@1")
    assert loaded.index_id == index.index_id and loaded.ids().tolist() == list(range(10))


def test_loading_with_another_encoder_is_refused(tmp_path):
    VectorIndex("enc@1", 8).save(tmp_path)
    with pytest.raises(IndexEncoderMismatch):
        load_index(tmp_path, "enc@2")


def test_corrupt_index_is_detected(tmp_path):
    index = VectorIndex("enc@1", 8)
    index.add(np.arange(3), unit_rows(3, 8))
    index.save(tmp_path)
    (tmp_path / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexCorrupt):
        load_index(tmp_path, "enc@1")

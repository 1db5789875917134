"""Snapshots through the storage interface (indexing/snapshots.py): the base's files are written in a
scratch folder and handed over to storage, which keeps them whole and leaves nothing behind there."""
import numpy as np

from common.storage import LocalStorage
from indexing.backends.faiss import IndexParams, build_store
from indexing.snapshots import encoder_prefix, load_snapshot, write_snapshot


def test_a_snapshot_moves_its_base_out_of_scratch_and_loads_back(tmp_path):
    rows = np.random.default_rng(0).normal(size=(500, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    store = build_store("enc", 32, np.arange(500), rows, IndexParams(ann_threshold=100, rerank=50))
    storage, scratch = LocalStorage(tmp_path / "storage"), tmp_path / "cache"
    key = write_snapshot(storage, store, scratch=scratch)
    assert list(scratch.iterdir()) == []  # every file moved out (or copied and removed)
    base = storage.path(f"{encoder_prefix('enc')}/bases/{store.index_id}")
    assert sorted(p.name for p in base.iterdir()) == ["ids.npy", "index.faiss", "vectors.npy"]
    loaded, loaded_key = load_snapshot(storage, "enc", tmp_path / "reader-cache")
    assert loaded_key == key and loaded.describe()["rerank"] == 50
    assert loaded.search(rows[:5], 5)[0].tolist() == store.search(rows[:5], 5)[0].tolist()

"""Snapshots through the storage interface (indexing/snapshots.py): the base's files are written in a
scratch folder and moved into storage (renamed on one filesystem, not copied), which keeps them whole;
what a writer killed mid-snapshot left in scratch is removed by the next one."""
import os
import shutil
import time

import numpy as np

from common.storage import LocalStorage
from indexing.backends.faiss import IndexParams, build_store
from indexing.snapshots import (
    encoder_prefix,
    load_snapshot,
    remove_stale_scratch,
    write_snapshot,
)


def _store(scratch=None):
    rows = np.random.default_rng(0).normal(size=(500, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return build_store("enc", 32, np.arange(500), rows, IndexParams(ann_threshold=100, rerank=50),
                       scratch=scratch), rows


def test_a_snapshot_moves_its_base_into_storage_and_loads_back(tmp_path, monkeypatch):
    storage, scratch = LocalStorage(tmp_path / "storage"), tmp_path / "cache"
    store, rows = _store(scratch)  # the writer builds in the same scratch folder (DATA_DIR/cache)

    def no_copy(*_, **__):
        raise AssertionError("a base file was copied, not moved")

    monkeypatch.setattr(shutil, "copyfileobj", no_copy)
    monkeypatch.setattr(shutil, "copyfile", no_copy)
    key = write_snapshot(storage, store, scratch=scratch)
    monkeypatch.undo()
    assert list(scratch.iterdir()) == []
    base = storage.path(f"{encoder_prefix('enc')}/bases/{store.index_id}")
    assert sorted(p.name for p in base.iterdir()) == ["ids.npy", "index.faiss", "vectors.npy"]
    # the re-rank rows were not even written twice: the stored file is the one the build wrote
    assert os.stat(base / "vectors.npy").st_ino == os.fstat(store.rows.fd).st_ino
    loaded, loaded_key = load_snapshot(storage, "enc", tmp_path / "reader-cache")
    assert loaded_key == key and loaded.describe()["rerank"] == 50
    assert loaded.search(rows[:5], 5)[0].tolist() == store.search(rows[:5], 5)[0].tolist()


def test_a_dead_writers_folder_is_removed_by_the_next_snapshot(tmp_path):
    scratch = tmp_path / "cache"
    dead, live, download = scratch / "snapshot-dead1", scratch / "snapshot-live1", scratch / "snapshots"
    for folder in (dead, live, download):
        folder.mkdir(parents=True)
        (folder / "vectors.npy").write_bytes(b"x" * 1000)
    hours_ago = time.time() - 2 * 3600
    for folder in (dead, download):
        os.utime(folder, (hours_ago, hours_ago))
    write_snapshot(LocalStorage(tmp_path / "storage"), _store()[0], scratch=scratch)
    assert sorted(p.name for p in scratch.iterdir()) == ["snapshot-live1", "snapshots"]  # downloads stay
    assert remove_stale_scratch(scratch, older_than_s=0) == 1 and [p.name for p in scratch.iterdir()] == ["snapshots"]

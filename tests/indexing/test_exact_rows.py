"""The float16 re-rank rows: written once while a base is built or folded, then named by the snapshot
(a hard link) instead of copied: at 1M a copy wrote 2.4 GiB more on every renewal, at 10M 24 GiB."""
import os

import numpy as np
import pytest

from indexing.backends import exact_rows
from indexing.backends.exact_rows import FileRows, RowsWriter
from indexing.backends.faiss import IndexParams, build_store, load_store

APPROX = IndexParams(ann_threshold=100, rerank=50)


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_a_saved_base_names_its_rows_instead_of_copying_them(tmp_path):
    vectors = unit_rows(600, 32)
    store = build_store("enc", 32, np.arange(600), vectors, APPROX, scratch=tmp_path / "scratch")
    assert store.rows.linkable and not os.listdir(tmp_path / "scratch")  # no name until a snapshot gives one
    store.save(tmp_path / "snap")
    saved = tmp_path / "snap" / "vectors.npy"
    assert os.stat(saved).st_ino == os.fstat(store.rows.fd).st_ino  # the same file, not a copy
    assert np.array_equal(np.load(saved), vectors.astype(np.float16))
    assert not [name for name in os.listdir(tmp_path / "snap") if name.endswith(".link")]
    loaded = load_store(tmp_path / "snap", "enc")
    assert np.array_equal(loaded.rows.span(0, 600), vectors.astype(np.float16))
    del store  # the store's descriptor closes; the snapshot's name keeps the rows
    assert np.array_equal(np.load(saved), vectors.astype(np.float16))


def test_rows_that_end_before_the_capacity_get_their_real_count_in_the_header(tmp_path):
    """A build counts its ids first; rows deleted meanwhile leave the file shorter than announced."""
    writer = RowsWriter(10, 4, tmp_path)
    writer.append(np.arange(28, dtype=np.float32).reshape(7, 4))
    rows = writer.finish()
    assert rows.linkable and rows.link_to(tmp_path / "rows.npy")
    assert np.array_equal(np.load(tmp_path / "rows.npy"), np.arange(28, dtype=np.float16).reshape(7, 4))
    assert len(FileRows.open(tmp_path / "rows.npy")) == 7


def test_without_o_tmpfile_the_rows_are_unlinked_and_saving_copies_them(tmp_path, monkeypatch):
    monkeypatch.delattr(exact_rows.os, "O_TMPFILE")
    vectors = unit_rows(600, 32)
    store = build_store("enc", 32, np.arange(600), vectors, APPROX, scratch=tmp_path / "scratch")
    assert not store.rows.linkable and not os.listdir(tmp_path / "scratch")
    store.save(tmp_path / "snap")
    assert os.stat(tmp_path / "snap" / "vectors.npy").st_ino != os.fstat(store.rows.fd).st_ino
    assert np.array_equal(np.load(tmp_path / "snap" / "vectors.npy"), vectors.astype(np.float16))


def test_a_failed_link_falls_back_to_a_copy(tmp_path, monkeypatch):
    """Another filesystem (EXDEV) or no /proc: the snapshot is still written, by copying."""
    vectors = unit_rows(600, 32)
    store = build_store("enc", 32, np.arange(600), vectors, APPROX, scratch=tmp_path / "scratch")

    def cross_device(*_, **__):
        raise OSError(18, "Invalid cross-device link")
    monkeypatch.setattr(exact_rows.os, "link", cross_device)
    store.save(tmp_path / "snap")
    assert np.array_equal(np.load(tmp_path / "snap" / "vectors.npy"), vectors.astype(np.float16))


@pytest.mark.parametrize("mmap", [False, True], ids=["built", "loaded"])
def test_a_folded_base_links_its_new_rows_too(tmp_path, mmap):
    from indexing.backends.faiss_fold import fold
    vectors = unit_rows(700, 32)
    store = build_store("enc", 32, np.arange(600), vectors[:600], APPROX, scratch=tmp_path / "scratch")
    if mmap:
        store.save(tmp_path / "first")
        store = load_store(tmp_path / "first", "enc", mmap=True)
    store.upsert(np.arange(600, 700), vectors[600:])
    folded = fold(store, store.state(), APPROX, scratch=tmp_path / "scratch")
    folded.save(tmp_path / "snap")
    assert os.stat(tmp_path / "snap" / "vectors.npy").st_ino == os.fstat(folded.rows.fd).st_ino
    assert np.array_equal(np.load(tmp_path / "snap" / "vectors.npy"), vectors.astype(np.float16))

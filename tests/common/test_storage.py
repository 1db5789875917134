"""One storage contract (docs/design.md §4), two backends: a local folder and S3 over HTTP against a standalone
moto_server (tests/s3server.py). Whatever holds the bytes, callers see the same behaviour."""
from pathlib import Path

import pytest

from common.storage import LocalStorage, S3Storage, local_copy, local_copy_prefix, storage_from


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "storage")
    server = request.getfixturevalue("s3_server")
    return S3Storage(f"s3://{server.new_bucket()}/attrib", endpoint_url=server.endpoint)


def test_put_get_exists_delete(storage):
    storage.put("sources/w1/abc.jpg", b"\xff\xd8image")
    assert storage.get("sources/w1/abc.jpg") == b"\xff\xd8image"
    assert storage.exists("sources/w1/abc.jpg") and not storage.exists("sources/w1")
    storage.delete("sources/w1/abc.jpg")
    storage.delete("sources/w1/abc.jpg")  # deleting twice is not an error
    assert not storage.exists("sources/w1/abc.jpg")
    with pytest.raises(FileNotFoundError):
        storage.get("sources/w1/abc.jpg")


def test_put_replaces(storage):
    storage.put("snapshots/enc/latest.json", b"one")
    storage.put("snapshots/enc/latest.json", b"two")
    assert storage.get("snapshots/enc/latest.json") == b"two"


def test_list_is_sorted_and_stays_inside_its_folder(storage):
    for key in ["sources/w1/b.jpg", "sources/w1/a.jpg", "sources/w10/c.jpg", "queries/ab/abc.jpg"]:
        storage.put(key, b"x")
    assert list(storage.list("sources/w1")) == ["sources/w1/a.jpg", "sources/w1/b.jpg"]
    assert list(storage.list("sources/w1/")) == ["sources/w1/a.jpg", "sources/w1/b.jpg"]
    assert list(storage.list("sources")) == ["sources/w1/a.jpg", "sources/w1/b.jpg", "sources/w10/c.jpg"]
    assert list(storage.list("nothing/here")) == []


def test_delete_prefix_removes_one_work_only(storage):
    for key in ["sources/w1/a.jpg", "sources/w1/b.jpg", "sources/w10/c.jpg"]:
        storage.put(key, b"x")
    storage.delete_prefix("sources/w1")
    storage.delete_prefix("sources/absent")
    assert list(storage.list("sources")) == ["sources/w10/c.jpg"]


@pytest.mark.parametrize("key", ["../escape.jpg", "/etc/passwd", "sources/../../x", "", "a//b"])
def test_keys_that_leave_the_root_are_refused(storage, key):
    with pytest.raises(ValueError):
        storage.put(key, b"x")


def test_local_copy_gives_a_readable_file(storage, tmp_path):
    storage.put("artifacts/enc/weights.bin", b"w" * 100)
    storage.put("artifacts/enc/config.json", b"{}")
    path = local_copy(storage, "artifacts/enc/weights.bin", tmp_path / "cache")
    assert path.read_bytes() == b"w" * 100
    folder = local_copy_prefix(storage, "artifacts/enc", tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.bin"]
    with pytest.raises(FileNotFoundError):
        local_copy(storage, "artifacts/enc/missing.bin", tmp_path / "cache")


def test_s3_writes_are_visible_to_another_client_at_once(s3_server):
    """Two hosts = two clients: no listing cache may hide a key another host just wrote or deleted."""
    url = f"s3://{s3_server.new_bucket()}/p"
    writer = S3Storage(url, endpoint_url=s3_server.endpoint)
    reader = S3Storage(url, endpoint_url=s3_server.endpoint)
    assert list(reader.list("sources")) == []
    writer.put("sources/w/a.jpg", b"x")
    assert list(reader.list("sources")) == ["sources/w/a.jpg"] and reader.exists("sources/w/a.jpg")
    writer.delete("sources/w/a.jpg")
    assert list(reader.list("sources")) == [] and not reader.exists("sources/w/a.jpg")


def test_storage_url_picks_the_backend(tmp_path):
    assert isinstance(storage_from("", "", tmp_path), LocalStorage)
    assert storage_from(f"file://{tmp_path}/x", "", None).root == tmp_path / "x"
    assert isinstance(storage_from("s3://bucket/prefix", "http://127.0.0.1:1", None), S3Storage)
    with pytest.raises(ValueError):
        S3Storage("s3:///no-bucket")


def test_migration_to_s3_copies_everything_once_and_can_be_rerun(s3_server, tmp_path, monkeypatch, capsys):
    from common.storage_migrate import main
    local = LocalStorage(tmp_path / "data" / "storage")
    keys = ["sources/w1/a.jpg", "queries/ab/abc.jpg", "artifacts/enc/weights.bin"]
    for key in keys:
        local.put(key, key.encode())
    target_url = f"s3://{s3_server.new_bucket()}/attrib"
    monkeypatch.setenv("ATTRIB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ATTRIB_STORAGE_URL", "")
    from common.settings import get_settings
    get_settings.cache_clear()
    try:
        assert main(["--to", target_url, "--endpoint-url", s3_server.endpoint]) == 0
        assert "copied 3 objects" in capsys.readouterr().out
        local.put("sources/w2/new.jpg", b"late")          # arrived while the first pass ran
        assert main(["--to", target_url, "--endpoint-url", s3_server.endpoint]) == 0
        second = capsys.readouterr().out
        assert "copied 1 objects" in second and "3 were already at the target" in second
    finally:
        get_settings.cache_clear()
    remote = S3Storage(target_url, endpoint_url=s3_server.endpoint)
    assert sorted(k for p in ("sources", "queries", "artifacts") for k in remote.list(p)) == sorted(
        keys + ["sources/w2/new.jpg"])
    assert remote.get("sources/w1/a.jpg") == b"sources/w1/a.jpg"


def test_large_files_stream_in_and_out_whole(storage, tmp_path):
    """Index bases are gigabytes at 1M vectors: they are streamed from and to files (multipart on S3,
    12 MB here crosses s3fs's 5 MB part size) and arrive whole."""
    data = bytes(range(256)) * (12 * 2**20 // 256) + b"tail"
    (tmp_path / "big.bin").write_bytes(data)
    storage.put_file("snapshots/enc/bases/b1/vectors.npy", tmp_path / "big.bin")
    assert storage.exists("snapshots/enc/bases/b1/vectors.npy")
    path = local_copy(storage, "snapshots/enc/bases/b1/vectors.npy", tmp_path / "cache")
    assert path.read_bytes() == data
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no partial download left
    assert storage.get("snapshots/enc/bases/b1/vectors.npy") == data  # get returns every byte too


def test_a_moved_file_is_stored_whole_and_given_up(storage, tmp_path):
    """Snapshots hand their base files over (`move=True`): at 10M the re-rank rows are 24 GiB, and a copy
    beside the written file needed that much disk again. Local storage on one filesystem renames it."""
    data = b"rows" * 100_000
    (tmp_path / "rows.npy").write_bytes(data)
    inode = (tmp_path / "rows.npy").stat().st_ino
    storage.put_file("snapshots/enc/bases/b1/vectors.npy", tmp_path / "rows.npy", move=True)
    assert not (tmp_path / "rows.npy").exists()
    assert storage.get("snapshots/enc/bases/b1/vectors.npy") == data
    if isinstance(storage, LocalStorage):
        assert storage.path("snapshots/enc/bases/b1/vectors.npy").stat().st_ino == inode  # renamed, not copied


def test_a_move_across_filesystems_copies_then_removes_the_source(tmp_path, monkeypatch):
    storage, source = LocalStorage(tmp_path / "storage"), tmp_path / "rows.npy"
    source.write_bytes(b"x" * 1000)
    monkeypatch.setattr("os.replace", _refuse_cross_device(source))
    storage.put_file("snapshots/enc/bases/b1/vectors.npy", source, move=True)
    assert storage.get("snapshots/enc/bases/b1/vectors.npy") == b"x" * 1000 and not source.exists()
    assert [p.name for p in storage.path("snapshots/enc/bases/b1").iterdir()] == ["vectors.npy"]


def test_a_copy_that_fails_leaves_nothing_in_storage_and_keeps_the_source(tmp_path, monkeypatch):
    """A full disk mid-copy (24 GiB of rows at 10M): no partial file is left holding the space, none lands
    under the key, and a move's source is kept for the next try."""
    import errno
    import shutil
    storage, source = LocalStorage(tmp_path / "storage"), tmp_path / "rows.npy"
    source.write_bytes(b"x" * 100_000)

    def copy_until_full(src, dst, length=0):
        dst.write(src.read(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", copy_until_full)
    for move in (False, True):
        with pytest.raises(OSError, match="No space"):
            if move:  # as across two filesystems: the rename is refused, the copy runs
                monkeypatch.setattr("os.replace", _refuse_cross_device(source))
            storage.put_file("snapshots/enc/bases/b1/vectors.npy", source, move=move)
    assert list((tmp_path / "storage" / "snapshots/enc/bases/b1").iterdir()) == [] and source.exists()


def _refuse_cross_device(source):
    """os.replace as it behaves when `source` and the target sit on two filesystems."""
    import errno
    import os
    real_replace = os.replace

    def replace(src, dst):
        if Path(src) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst)
    return replace


def test_local_get_reads_whole_files_and_refuses_folders(tmp_path, monkeypatch):
    """LocalStorage.get reads with bare system calls (the GPU readers' hot path): an empty file, a file
    that arrives in short reads (as from a network file system), and a folder (an error, as with
    Path.read_bytes)."""
    import os
    storage = LocalStorage(tmp_path / "storage")
    storage.put("a/empty.bin", b"")
    data = bytes(range(256)) * 4096 + b"tail"
    storage.put("a/big.bin", data)
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real_read(fd, min(n, 100_000)))
    assert storage.get("a/empty.bin") == b"" and storage.get("a/big.bin") == data
    with pytest.raises(IsADirectoryError):
        storage.get("a")

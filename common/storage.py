"""Storage of everything shared between hosts (docs/design.md §4): uploaded source images under their work
(`sources/<work id>/<sha256>.jpg`), query images under their job (`queries/<2 hex>/<job id>.jpg`), encoder
artefacts (`artifacts/...`) and index snapshots (`snapshots/...`).

Two backends behind one interface: `LocalStorage` (a folder, the default) and `S3Storage` (any S3-compatible
endpoint, through fsspec/s3fs), picked by `get_storage(settings)` from `ATTRIB_STORAGE_URL`. Only the local
backend has `path()`; code that needs a real file (FAISS memory-mapping a snapshot, torch loading an
artefact) asks `local_copy`, so API, workers and trainer can run on hosts that share no filesystem.
Writes are atomic on both: a temporary file renamed into place locally, a single PUT on S3 (an object is
visible whole or not at all), so a crash never leaves a half-written image."""
import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class Storage(Protocol):
    """Every byte shared between hosts goes through this (docs/design.md §4). Keys are '/'-separated.
    `put` replaces an existing key; `get` of a missing key raises FileNotFoundError; `list(prefix)` yields
    the keys below a folder-like prefix in sorted order; deleting a missing key or prefix is not an error."""

    def put(self, key: str, data: bytes) -> None: ...
    # Large files (index bases) without a copy in memory. move=True: the caller gives `path` up, and it is
    # gone afterwards (local storage renames it into place when one filesystem holds both: no byte copied).
    def put_file(self, key: str, path: Path, move: bool = False) -> None: ...
    def get(self, key: str) -> bytes: ...
    def get_file(self, key: str, path: Path) -> None: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def delete_prefix(self, prefix: str) -> None: ...


def key_for(kind: str, name: str, extension: str) -> str:
    """`queries/ab/abcdef....jpg`: two hex characters fan files out over folders (or S3 key prefixes)."""
    return f"{kind}/{name[:2]}/{name}.{extension}"


def _check_key(key: str) -> str:
    """Keys come from our own code, but a key that climbs out of the root must never reach a backend."""
    parts = key.strip("/").split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._root = str(self.root)

    key_for = staticmethod(key_for)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file itself; only for code that knows it holds local storage (see `local_copy`)."""
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)

    def put_file(self, key: str, path: Path, move: bool = False) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:  # a 10M base's re-rank rows are 24 GiB: copying them doubled the disk and the time
                os.replace(path, target)
                return
            except OSError as error:
                if error.errno != errno.EXDEV:  # another filesystem: copy below
                    raise
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:  # synced before the rename: a base's id list marks it complete, so a short file must never land
            with os.fdopen(fd, "wb") as out, open(path, "rb") as source:
                shutil.copyfileobj(source, out, 1 << 24)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:  # a full disk (24 GiB of rows) must not leave the partial copy holding it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if move:
            os.unlink(path)

    def get(self, key: str) -> bytes:
        """Four system calls (open, fstat, read, close) and no Path or file object: a GPU worker's reader
        threads read thousands of images a second under one GIL. One thread reading 2,000 cached 60 kB
        files took 15-16 us a file against 23 us with `Path.read_bytes` (2-core Intel Xeon VM,
        2026-11-27, an inline timing loop); two reader threads in bench.gpu_embed read and checked 11.2k
        against 9.8k small files a second on an H200 (16.9k against 6.2k larger ones).
        Stored objects are written once (put: a temporary file renamed into place), so fstat's size is
        the size."""
        fd = os.open(os.path.join(self._root, _check_key(key)), os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, size)
            if len(data) < size:  # a short read (a signal, a network file system): read the rest
                chunks = [data]
                while chunk := os.read(fd, size):
                    chunks.append(chunk)
                data = b"".join(chunks)
            return data
        finally:
            os.close(fd)

    def get_file(self, key: str, path: Path) -> None:
        shutil.copyfile(self.path(key), path)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.name.startswith(".upload-"):
                    yield path.relative_to(self.root).as_posix()

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix.strip("/")), ignore_errors=True)


class S3Storage:
    """Keys below `s3://bucket/prefix` on any S3-compatible endpoint. Credentials come the usual way
    (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, or an instance role), never from our settings.
    Listing caches are off: another host may have written or deleted a key a moment ago."""

    def __init__(self, url: str, *, endpoint_url: str | None = None):
        import s3fs  # only processes configured for S3 pay for importing it

        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3:// URL: {url!r}")
        self.url = url.rstrip("/")
        self.base = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
        client_kwargs = {"endpoint_url": endpoint_url} if endpoint_url else {}
        self.fs = s3fs.S3FileSystem(client_kwargs=client_kwargs, use_listings_cache=False,
                                    skip_instance_cache=True)

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    def _full(self, key: str) -> str:
        return f"{self.base}/{_check_key(key)}"

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._full(key), data)

    def put_file(self, key: str, path: Path, move: bool = False) -> None:
        self.fs.put_file(str(path), self._full(key))  # multipart above a few MB: visible only once complete
        if move:
            os.unlink(path)

    def get(self, key: str) -> bytes:
        return self.fs.cat_file(self._full(key))

    def get_file(self, key: str, path: Path) -> None:
        self.fs.get_file(self._full(key), str(path))

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._full(key))
        except FileNotFoundError:
            pass

    def exists(self, key: str) -> bool:
        return self.fs.isfile(self._full(key))

    def list(self, prefix: str) -> Iterator[str]:
        folder = f"{self.base}/{prefix.strip('/')}".rstrip("/")
        try:
            found = self.fs.find(folder + "/")
        except FileNotFoundError:
            return
        for full in sorted(found):
            yield full[len(self.base) + 1:]

    def delete_prefix(self, prefix: str) -> None:
        keys = [self._full(key) for key in self.list(_check_key(prefix.strip("/")))]
        if keys:
            self.fs.rm(keys)


def get_storage(settings) -> "LocalStorage | S3Storage":
    """The configured storage: `ATTRIB_STORAGE_URL` (s3://bucket/prefix, or a local folder / file:// URL),
    else a folder under the data directory."""
    return storage_from(settings.storage_url, settings.s3_endpoint_url, settings.storage_dir)


@lru_cache(maxsize=16)
def storage_from(url: str, endpoint_url: str = "", default_dir: Path | None = None) -> "LocalStorage | S3Storage":
    """One instance per configuration (an S3 client holds a connection pool; jobs reuse it)."""
    if not url:
        if default_dir is None:
            raise ValueError("no storage URL and no default folder")
        return LocalStorage(default_dir)
    if url.startswith("s3://"):
        return S3Storage(url, endpoint_url=endpoint_url or None)
    return LocalStorage(Path(url.removeprefix("file://")))


def local_copy(storage, key: str, cache_dir: Path) -> Path:
    """A local file with the bytes of `key`: the file itself for local storage, otherwise a download cached
    under `cache_dir` (written atomically, reused while present); FileNotFoundError if the key is missing. Use it for immutable keys only (snapshots
    and artefacts get a new key per version), since a cached copy is never refreshed."""
    if isinstance(storage, LocalStorage):
        path = storage.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no stored object {key!r}")
        return path
    target = Path(cache_dir) / _check_key(key)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".download-")
        os.close(fd)
        try:
            storage.get_file(key, Path(tmp))  # streamed: a 2 GB index base never sits in memory
        except BaseException:
            os.unlink(tmp)
            raise
        os.replace(tmp, target)
    return target


def local_copy_prefix(storage, prefix: str, cache_dir: Path) -> Path:
    """A local folder holding every key below `prefix` (an exported encoder artefact, an index directory)."""
    if isinstance(storage, LocalStorage):
        return storage.path(prefix.strip("/"))
    for key in storage.list(prefix):
        local_copy(storage, key, cache_dir)
    return Path(cache_dir) / prefix.strip("/")

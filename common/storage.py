"""File storage for uploaded images: source images under their work (`sources/<work id>/<sha256>.jpg`),
query images under their job (`queries/<2 hex>/<job id>.jpg`). Nothing is shared between works or
jobs, so deleting one never removes another's file. Writes go to a temporary file and are renamed
into place, so a crash never leaves a half-written image."""
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class Storage(Protocol):
    """Every byte shared between hosts goes through this (docs/design.md §4). Keys are '/'-separated."""

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def delete_prefix(self, prefix: str) -> None: ...


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key_for(kind: str, name: str, extension: str) -> str:
        return f"{kind}/{name[:2]}/{name}.{extension}"

    def path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        base = self.path(prefix)
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.name.startswith(".upload-"):
                    yield path.relative_to(self.root).as_posix()

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)


def local_copy(storage: Storage, key: str, cache_dir: Path) -> Path:
    """A local file holding the object at `key` (docs/design.md §4), for readers that need a path (FAISS
    memory-maps a snapshot): local storage's own file, else a cached download. Keys of immutable
    objects only: a cached copy is never refreshed."""
    if isinstance(storage, LocalStorage):
        return storage.path(key)
    target = Path(cache_dir) / key
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".download-")
        with os.fdopen(fd, "wb") as f:
            f.write(storage.get(key))
        os.replace(tmp, target)
    return target

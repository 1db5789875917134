"""File storage for uploaded images: source images under their work (`sources/<work id>/<sha256>.jpg`),
query images under their job (`queries/<2 hex>/<job id>.jpg`). Nothing is shared between works or
jobs, so deleting one never removes another's file. Writes go to a temporary file and are renamed
into place, so a crash never leaves a half-written image."""
import os
import tempfile
from pathlib import Path


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

"""Content-addressed file storage for uploaded images (source images and queries).

Keys look like `sources/ab/abcdef….jpg`; the same bytes are stored once per kind. Writes go to a
temporary file and are renamed into place, so a crash never leaves a half-written image."""
import os
import tempfile
from pathlib import Path


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key_for(kind: str, sha256: str, extension: str) -> str:
        return f"{kind}/{sha256[:2]}/{sha256}.{extension}"

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

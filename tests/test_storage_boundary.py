"""Nothing outside the local backend may reach a stored object through the local filesystem: a host
configured for S3 has no such file. Product code gets storage from `get_storage(settings)` and files from
`local_copy`; only common/storage.py knows `LocalStorage`, `storage_dir` or `path()` of a stored key."""
import re

from tests.conftest import REPO

PRODUCT = ["app", "common", "core", "indexing", "worker", "training", "cli", "bench"]
ALLOWED = {"common/storage.py", "common/settings.py"}
FORBIDDEN = [r"\bLocalStorage\b", r"\bstorage_dir\b", r"storage\w*\.path\("]


def offending_lines(root=REPO) -> list[str]:
    hits = []
    for package in PRODUCT:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative in ALLOWED:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if any(re.search(pattern, line) for pattern in FORBIDDEN):
                    hits.append(f"{relative}:{number}: {line.strip()}")
    return hits


def test_only_the_local_backend_touches_local_storage_files():
    assert offending_lines() == []


def test_the_check_catches_a_direct_local_read(tmp_path):
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "jobs.py").write_text(
        "data = LocalStorage(settings.storage_dir).get(key)\npath = storage.path(key)\n")
    assert len(offending_lines(tmp_path)) == 2

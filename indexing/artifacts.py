"""Published artefacts (an exported encoder, an index directory) through shared storage, so a worker on
another host can load the pair an admin published elsewhere.

A pair row names its files either as a local path (one machine, today's default) or as
`storage:<prefix>` when publishing uploaded them under `artifacts/pairs/<index id>/...`. A worker resolves
the latter to a cached local copy (`common.storage.local_copy_prefix`). Keys are never rewritten in place:
each published index has a new id, so a cached copy is never stale."""
from pathlib import Path

from common.storage import get_storage, local_copy_prefix

SCHEME = "storage:"


def uploads_artifacts(settings) -> bool:
    """Upload when storage is remote: a local path would mean nothing on another host."""
    return settings.storage_url.startswith("s3://")


def upload_dir(settings, local_dir: Path, prefix: str) -> str:
    """Put every file of `local_dir` under `prefix`; returns the `storage:` spec a pair row records."""
    storage = get_storage(settings)
    for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
        storage.put_file(f"{prefix}/{path.relative_to(local_dir).as_posix()}", path)  # streamed: GBs at 1M
    return SCHEME + prefix


def resolve(spec: str | None, settings) -> str | None:
    """A spec a loader understands: `storage:` prefixes become a local folder; anything else is unchanged."""
    if not spec or not spec.startswith(SCHEME):
        return spec
    cache = settings.data_dir / "cache" / "storage"
    return str(local_copy_prefix(get_storage(settings), spec[len(SCHEME):], cache))

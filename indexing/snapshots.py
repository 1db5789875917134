"""Snapshots of a worker's vector store, shared through the Storage interface (docs/design.md §2-§4).

One writer at a time (a Redis lock per encoder) saves what its store holds, with the change-log
position it includes, on a schedule and at shutdown, never after every change. Other workers load the
newest snapshot read-only (the base memory-mapped where FAISS can, so workers on one host share its
pages; the default fast-scan codes are read into each worker's memory instead) and replay
the log tail. Keys:
    snapshots/<encoder>/bases/<index id>/{index.faiss, vectors.npy, ids.npy}   large, immutable, written once
                                    (vectors.npy: float16 rows for re-ranking, approximate bases only)
    snapshots/<encoder>/<seq, 12 digits>-<stamp>/{index.json, delta.npz, masked.npy}   small
A snapshot is complete once its index.json exists (written last); readers take the highest seq."""
import json
import logging
import re
import shutil
import tempfile
import time
from pathlib import Path

from redis import Redis

from common.storage import Storage, local_copy
from indexing.backends.faiss import (
    BASE_FILE, BASE_FILES, DELTA_FILE, IDS_FILE, MASKED_FILE, SIDECAR_FILE, VECTORS_FILE, FaissStore, StoreState,
    load_store,
)
from indexing.vectorstore import IndexCorrupt, IndexEncoderMismatch

log = logging.getLogger(__name__)
KEEP = 2  # snapshots kept per encoder (a reader may still be copying the previous one)
SCRATCH_PREFIX = "snapshot-"  # a snapshot's files while written, in the writer's scratch folder
STALE_SCRATCH_S = 3600  # a writer's folder untouched this long is a dead writer's (10M: a few minutes)


def encoder_prefix(encoder_id: str) -> str:
    return f"snapshots/{re.sub(r'[^A-Za-z0-9._-]+', '_', encoder_id)}"


class WriterLock:
    """Who writes snapshots for an encoder: the first worker to take the key keeps it while it renews it.
    `scope` (the queue name) keeps stacks that share one Redis apart."""

    def __init__(self, redis: Redis, scope: str, encoder_id: str, owner: str, ttl_s: int):
        self.redis, self.owner, self.ttl_s = redis, owner, ttl_s
        self.key = f"attrib:snapshot-writer:{scope}:{encoder_id}"

    def acquire(self) -> bool:
        if self.redis.set(self.key, self.owner, nx=True, ex=self.ttl_s):
            return True
        if (self.redis.get(self.key) or b"").decode() == self.owner:
            self.redis.expire(self.key, self.ttl_s)
            return True
        return False

    def release(self) -> None:
        if (self.redis.get(self.key) or b"").decode() == self.owner:
            self.redis.delete(self.key)


def write_snapshot(storage: Storage, store: FaissStore, scratch: Path | None = None,
                   state: StoreState | None = None) -> str:
    """Save the store as of `state` (`store.state()`, default now) under a new snapshot key, its base
    only if not stored yet; returns the key. A state taken beforehand lets the store go on changing
    while this writes (a new base is gigabytes at 1M-10M). The files are written in a temporary folder
    in `scratch` (default: the system's), then moved into storage: renamed, not copied, when local
    storage shares scratch's filesystem."""
    state = state or store.state()
    prefix = encoder_prefix(store.encoder_id)
    base_key = f"{prefix}/bases/{store.index_id}"
    snapshot_key = f"{prefix}/{state.applied_seq:012d}-{time.time_ns()}"
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
        remove_stale_scratch(Path(scratch))
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=scratch) as tmp:
        directory = Path(tmp)
        write_base = not storage.exists(f"{base_key}/{IDS_FILE}")
        store.save(directory, write_base=write_base, state=state)
        if write_base:  # ids last: it marks the base complete
            for name in BASE_FILES:
                if (directory / name).exists():
                    storage.put_file(f"{base_key}/{name}", directory / name, move=True)
        for name in (DELTA_FILE, MASKED_FILE, SIDECAR_FILE):
            storage.put(f"{snapshot_key}/{name}", (directory / name).read_bytes())
    _prune(storage, prefix)
    log.info("snapshot %s: %d vectors at log position %d", snapshot_key, state.manifest["count"], state.applied_seq)
    return snapshot_key


def remove_stale_scratch(scratch: Path, older_than_s: float = STALE_SCRATCH_S) -> int:
    """Remove what writers killed mid-snapshot left in `scratch` (a folder on the data volume, unlike
    /tmp: it survives restarts, and at 10M one holds 24 GiB of rows); returns how many folders went."""
    removed = 0
    for folder in scratch.glob(SCRATCH_PREFIX + "*"):
        try:
            if folder.is_dir() and time.time() - folder.stat().st_mtime > older_than_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except FileNotFoundError:  # another writer removed it first
            continue
    if removed:
        log.warning("removed %d unfinished snapshot folder(s) from %s", removed, scratch)
    return removed


def latest_snapshots(storage: Storage, encoder_id: str) -> list[str]:
    """Complete snapshots of this encoder, newest first."""
    prefix = encoder_prefix(encoder_id)
    keys = [k.rsplit("/", 1)[0] for k in storage.list(prefix + "/") if k.endswith(f"/{SIDECAR_FILE}")]
    return sorted((k for k in keys if "/bases/" not in k), reverse=True)


def load_snapshot(storage: Storage, encoder_id: str, cache_dir: Path, mmap: bool = True) -> tuple[FaissStore, str] | None:
    """The newest readable snapshot of this encoder, read-only with its base memory-mapped, or None."""
    for key in latest_snapshots(storage, encoder_id):
        try:
            sidecar = local_copy(storage, f"{key}/{SIDECAR_FILE}", cache_dir)
            manifest = json.loads(sidecar.read_text())
            base_key = f"{encoder_prefix(encoder_id)}/bases/{manifest['index_id']}"
            base_file = local_copy(storage, f"{base_key}/{BASE_FILE}", cache_dir)
            if manifest.get("rerank"):
                local_copy(storage, f"{base_key}/{VECTORS_FILE}", cache_dir)
            local_copy(storage, f"{base_key}/{IDS_FILE}", cache_dir)
            for name in (DELTA_FILE, MASKED_FILE):
                local_copy(storage, f"{key}/{name}", cache_dir)
            return load_store(sidecar.parent, encoder_id, mmap=mmap, base_dir=base_file.parent), key
        except (OSError, KeyError, ValueError, IndexCorrupt, IndexEncoderMismatch) as exc:
            log.warning("ignoring snapshot %s: %s", key, exc)  # never serve a bad snapshot
    return None


def _prune(storage: Storage, prefix: str) -> None:
    """Keep the newest KEEP snapshots and the bases they use."""
    snapshots = sorted({k.rsplit("/", 1)[0] for k in storage.list(prefix + "/") if "/bases/" not in k}, reverse=True)
    complete = [k for k in snapshots if storage.exists(f"{k}/{SIDECAR_FILE}")]
    for key in complete[KEEP:]:
        storage.delete_prefix(key)
    keep_bases = set()
    for key in complete[:KEEP]:
        keep_bases.add(_index_id_of_key(storage, key))
    for base in {k.split("/bases/")[1].split("/")[0] for k in storage.list(f"{prefix}/bases/")} - keep_bases:
        storage.delete_prefix(f"{prefix}/bases/{base}")


def _index_id_of_key(storage: Storage, key: str) -> str:
    return json.loads(storage.get(f"{key}/{SIDECAR_FILE}"))["index_id"]

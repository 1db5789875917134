"""API key lookups cached briefly in each API process, and dropped at once when any key is revoked.

Revoking a key (over the API or `python -m common.apikeys revoke`) commits, then increments a version
counter in Redis (common.apikeys.KEYS_VERSION). Every authenticated request already makes one pipelined
Redis call for its rate limit; the counter is read in that same call, so a cache hit costs no database
query and no extra round trip, and a changed counter empties the cache before the key is trusted."""
import threading
import time
import uuid
from dataclasses import dataclass

from common.db.models import ApiKey, Scope

_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CachedKey:
    """What routes read of a key (the ORM row is not shared between requests)."""
    id: uuid.UUID
    name: str
    scope: Scope
    rights_holder: str | None
    prefix: str  # the audit log names a key by its prefix and name

    @classmethod
    def of(cls, key: ApiKey) -> "CachedKey":
        return cls(key.id, key.name, key.scope, key.rights_holder, key.prefix)


class KeyCache:
    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[CachedKey, float]] = {}
        self._version: bytes | None = None

    def get(self, digest: str, ttl_s: float) -> CachedKey | None:
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None or time.monotonic() - entry[1] > ttl_s:
            return None
        return entry[0]

    def put(self, digest: str, key: CachedKey, version: bytes | None) -> None:
        """`version`: the counter read *before* the database lookup, so a revocation committed after
        that read always shows up as a newer counter on the next request."""
        with self._lock:
            if version != self._version:
                self._entries.clear()
                self._version = version
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (key, time.monotonic())

    def current(self, version: bytes | None) -> bool:
        """False (and the cache emptied) when a key was revoked since the entries were read."""
        with self._lock:
            if version == self._version:
                return True
            self._entries.clear()
            return False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._version = None


KEY_CACHE = KeyCache()

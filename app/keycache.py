"""API key lookups cached briefly in each API process, and dropped at once when any key is revoked.

Revoking a key (over the API or `python -m common.apikeys revoke`) commits, then increments a version
counter in Redis (common.apikeys.KEYS_VERSION). Every authenticated request already makes one pipelined
Redis call for its rate limit; the counter is read in that same call, so a cache hit costs no database
query and no extra round trip, and a changed counter empties the cache before the key is trusted."""
import threading
import time
import uuid
from dataclasses import dataclass

from app.ratelimit import enforce_rate_limit
from common.apikeys import KEYS_VERSION, authenticate, hash_secret
from common.db.models import ApiKey, Scope
from common.db.session import new_session

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


def lookup_key(redis, settings, secret: str) -> CachedKey | None:
    """The valid key for `secret`, metered against its rate, or None (unknown or revoked). A cache hit
    costs one pipelined Redis call (rate limit + key version) and no database query."""
    digest = hash_secret(secret)
    key = KEY_CACHE.get(digest, settings.key_cache_ttl_s)
    if key is not None:
        version = _count(redis, key, settings)
        if KEY_CACHE.current(version):
            return key
    version = redis.get(KEYS_VERSION)  # read before the database: see KeyCache.put
    with new_session() as session:
        row = authenticate(session, secret=secret)
        fresh = CachedKey.of(row) if row is not None else None
    if fresh is None:
        return None
    if key is None or key.id != fresh.id:
        _count(redis, fresh, settings)
    KEY_CACHE.put(digest, fresh, version)
    return fresh


def unmetered_key(secret: str) -> CachedKey | None:
    """The valid key for `secret` from the database alone (no Redis, no rate count): for health checks."""
    with new_session() as session:
        row = authenticate(session, secret=secret)
        return CachedKey.of(row) if row is not None else None


def _count(redis, key: CachedKey, settings) -> bytes | None:
    return enforce_rate_limit(redis, str(key.id), settings.rate_limit_requests, settings.rate_limit_window_s,
                              also_get=KEYS_VERSION)

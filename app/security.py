"""Who is calling: a bearer API key, checked against its stored hash, rate-limited, with a scope.
`admin` may do everything; `registrar` manages its own rights holder's works; `attributor` submits
and reads its own attribution jobs."""
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.deps import RedisDep, SessionDep, SettingsDep
from app.problems import Problem
from app.ratelimit import enforce_rate_limit
from app.keycache import KEY_CACHE, CachedKey
from common.apikeys import KEYS_VERSION, authenticate, hash_secret
from common.db.models import Scope

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer atk_…`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def get_current_key(session: SessionDep, redis: RedisDep, settings: SettingsDep,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> CachedKey:
    """A cache hit costs one pipelined Redis call (rate limit + key version) and no database query."""
    if credentials is None:
        raise Problem(401, "send an API key as `Authorization: Bearer <key>`", title="API key required",
                      headers=_CHALLENGE)
    digest = hash_secret(credentials.credentials)
    key = KEY_CACHE.get(digest, settings.key_cache_ttl_s)
    if key is not None:
        version = _count(redis, key, settings)
        if KEY_CACHE.current(version):
            return key
    version = redis.get(KEYS_VERSION)  # read before the database: see KeyCache.put
    row = authenticate(session, secret=credentials.credentials)
    if row is None:
        raise Problem(401, "the API key is unknown or revoked", title="Invalid API key", headers=_CHALLENGE)
    fresh = CachedKey.of(row)
    if key is None or key.id != fresh.id:
        _count(redis, fresh, settings)
    KEY_CACHE.put(digest, fresh, version)
    return fresh


def _count(redis, key: CachedKey, settings) -> bytes | None:
    return enforce_rate_limit(redis, str(key.id), settings.rate_limit_requests, settings.rate_limit_window_s,
                              also_get=KEYS_VERSION)


CurrentKey = Annotated[CachedKey, Depends(get_current_key)]


def require(*scopes: Scope):
    """Dependency: the caller's key has one of `scopes` (admin always passes)."""
    def check(key: CurrentKey) -> CachedKey:
        if key.scope != Scope.admin and key.scope not in scopes:
            allowed = ", ".join(s.value for s in (Scope.admin, *scopes))
            raise Problem(403, f"this needs a key with scope {allowed}; yours is {key.scope.value}",
                          title="Forbidden")
        return key
    return check


AdminKey = Annotated[CachedKey, Depends(require())]
RegistrarKey = Annotated[CachedKey, Depends(require(Scope.registrar))]
AttributorKey = Annotated[CachedKey, Depends(require(Scope.attributor))]


def owns_rights_holder(key: CachedKey, rights_holder: str) -> bool:
    return key.scope == Scope.admin or key.rights_holder == rights_holder

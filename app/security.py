"""Who is calling: a bearer API key, checked against its stored hash, rate-limited, with a scope.
`admin` may do everything; `registrar` manages its own rights holder's works; `attributor` submits
and reads its own attribution jobs; `metrics` may only be scraped by Prometheus;
`reviewer` reads every job and gives verdicts on its matches."""
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from app.api.deps import RedisDep, SettingsDep
from app.keycache import CachedKey, lookup_key
from app.problems import Problem
from common.db.models import Scope
from common.logging_config import bind

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer atk_…`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def get_current_key(request: Request, redis: RedisDep, settings: SettingsDep,
                          credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> CachedKey:
    """The key the gate (app/gate.py) already checked and metered before the body was read; looked up
    here (in the thread pool: Redis and the database) only for an app run without the gate. Async, so the
    common case costs no thread hand-over (app.api.deps)."""
    gate_state = request.scope.get("state", {})
    if "api_key" in gate_state:
        key = gate_state["api_key"]
    elif credentials is not None:
        key = await run_in_threadpool(lookup_key, redis, settings, credentials.credentials)
    else:
        key = None
    if key is None:
        if credentials is None:
            raise Problem(401, "send an API key as `Authorization: Bearer <key>`", title="API key required",
                          headers=_CHALLENGE)
        raise Problem(401, "the API key is unknown or revoked", title="Invalid API key", headers=_CHALLENGE)
    bind(key_id=key.id)
    return key


CurrentKey = Annotated[CachedKey, Depends(get_current_key)]


def require(*scopes: Scope):
    """Dependency: the caller's key has one of `scopes` (admin always passes)."""
    async def check(key: CurrentKey) -> CachedKey:
        if key.scope != Scope.admin and key.scope not in scopes:
            allowed = ", ".join(s.value for s in (Scope.admin, *scopes))
            raise Problem(403, f"this needs a key with scope {allowed}; yours is {key.scope.value}",
                          title="Forbidden")
        return key
    return check


AdminKey = Annotated[CachedKey, Depends(require())]
RegistrarKey = Annotated[CachedKey, Depends(require(Scope.registrar))]
AttributorKey = Annotated[CachedKey, Depends(require(Scope.attributor))]
MetricsKey = Annotated[CachedKey, Depends(require(Scope.metrics))]
# Reads a job: its owner (attributor), or any reviewer.
JobReaderKey = Annotated[CachedKey, Depends(require(Scope.attributor, Scope.reviewer))]
ReviewerKey = Annotated[CachedKey, Depends(require(Scope.reviewer))]


def owns_rights_holder(key: CachedKey, rights_holder: str) -> bool:
    return key.scope == Scope.admin or key.rights_holder == rights_holder

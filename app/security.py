"""Who is calling: a bearer API key, checked against its stored hash, rate-limited, with a scope.
`admin` may do everything; `registrar` manages its own rights holder's works; `attributor` submits
and reads its own attribution jobs; `metrics` may only be scraped by Prometheus;
`reviewer` reads every job and gives verdicts on its matches."""
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.deps import RedisDep, SessionDep, SettingsDep
from app.problems import Problem
from app.ratelimit import enforce_rate_limit
from common.apikeys import authenticate
from common.logging_config import bind
from common.db.models import ApiKey, Scope

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer atk_…`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def get_current_key(request: Request, session: SessionDep, redis: RedisDep, settings: SettingsDep,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
    gate_state = request.scope.get("state", {})
    if "api_key" in gate_state:  # the gate (app/gate.py) already checked and metered it
        if gate_state["api_key"] is None:
            raise Problem(401, "send an API key as `Authorization: Bearer <key>`", title="API key required",
                          headers=_CHALLENGE)
        return gate_state["api_key"]
    if credentials is None:
        raise Problem(401, "send an API key as `Authorization: Bearer <key>`", title="API key required",
                      headers=_CHALLENGE)
    key = authenticate(session, secret=credentials.credentials)
    if key is None:
        raise Problem(401, "the API key is unknown or revoked", title="Invalid API key", headers=_CHALLENGE)
    bind(key_id=key.id)
    enforce_rate_limit(redis, str(key.id), settings.rate_limit_requests, settings.rate_limit_window_s)
    return key


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]


def require(*scopes: Scope):
    """Dependency: the caller's key has one of `scopes` (admin always passes)."""
    def check(key: CurrentKey) -> ApiKey:
        if key.scope != Scope.admin and key.scope not in scopes:
            allowed = ", ".join(s.value for s in (Scope.admin, *scopes))
            raise Problem(403, f"this needs a key with scope {allowed}; yours is {key.scope.value}",
                          title="Forbidden")
        return key
    return check


AdminKey = Annotated[ApiKey, Depends(require())]
RegistrarKey = Annotated[ApiKey, Depends(require(Scope.registrar))]
AttributorKey = Annotated[ApiKey, Depends(require(Scope.attributor))]
MetricsKey = Annotated[ApiKey, Depends(require(Scope.metrics))]
# Reads a job: its owner (attributor), or any reviewer.
JobReaderKey = Annotated[ApiKey, Depends(require(Scope.attributor, Scope.reviewer))]
ReviewerKey = Annotated[ApiKey, Depends(require(Scope.reviewer))]


def owns_rights_holder(key: ApiKey, rights_holder: str) -> bool:
    return key.scope == Scope.admin or key.rights_holder == rights_holder

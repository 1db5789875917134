"""Admins create, list and revoke API keys (the CLI `python -m common.apikeys` does the same)."""
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import RedisDep, SessionDep
from app.problems import Problem
from app.schemas import Storable
from app.security import AdminKey
from common.apikeys import announce_revocation, create_key, list_keys, revoke_key
from common.audit import record
from common.db.models import Scope

router = APIRouter(prefix="/keys", tags=["keys"])


class KeyCreate(BaseModel):
    name: Annotated[str, Storable] = Field(min_length=1, max_length=200)
    scope: Scope
    rights_holder: Annotated[str | None, Storable] = Field(default=None, min_length=1, max_length=200)


class KeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    scope: Scope
    rights_holder: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    secret: str = Field(description="shown only in this response; only its hash is stored")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
def create_api_key(admin: AdminKey, session: SessionDep, response: Response, body: KeyCreate) -> KeyCreated:
    """Create a key; its secret is returned once (never stored, nor kept for Idempotency-Key replays)."""
    response.headers["Cache-Control"] = "no-store"
    try:
        key, secret = create_key(session, name=body.name, scope=body.scope, rights_holder=body.rights_holder)
    except ValueError as exc:
        raise Problem(422, str(exc), title="Invalid request parameters") from exc
    record(session, action="key.create", key=admin, target=key.id,
           detail={"name": key.name, "scope": key.scope.value, "rights_holder": key.rights_holder})
    session.commit()
    return KeyCreated(**KeyPublic.model_validate(key).model_dump(), secret=secret)


@router.get("", response_model=list[KeyPublic])
def read_api_keys(_: AdminKey, session: SessionDep) -> list[KeyPublic]:
    """All keys, without their secrets."""
    return [KeyPublic.model_validate(k) for k in list_keys(session)]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_api_key(admin: AdminKey, session: SessionDep, redis: RedisDep, key_id: uuid.UUID) -> Response:
    """Revoke a key; it stops working at once (every API process drops its cached lookups)."""
    if revoke_key(session, key_id=key_id) is None:
        raise Problem(404, f"no key with id {key_id}", title="Unknown key")
    record(session, action="key.revoke", key=admin, target=key_id)
    session.commit()
    announce_revocation(redis)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

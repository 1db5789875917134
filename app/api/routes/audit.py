"""The audit log for admins: registrations, deletions, key operations, publishes; newest first."""
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from app.api.deps import SessionDep
from app.problems import Problem
from app.security import AdminKey
from common.audit import list_entries

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor_key_id: uuid.UUID | None
    actor: str
    action: str
    target: str | None
    detail: dict | None


class AuditPage(BaseModel):
    data: list[AuditEntryPublic]
    next_cursor: str | None = None


@router.get("", response_model=AuditPage)
def read_audit_log(_: AdminKey, session: SessionDep,
                   cursor: Annotated[str | None, Query(max_length=40, description="`next_cursor` of the previous page")] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100,
                   action: Annotated[str | None, Query(max_length=50, description="e.g. work.register")] = None,
                   ) -> AuditPage:
    """Audit entries, newest first; follow `next_cursor` for older ones."""
    entries = list_entries(session, before_id=_decode(cursor), limit=limit, action=action)
    next_cursor = str(entries[-1].id) if len(entries) == limit else None
    return AuditPage(data=[AuditEntryPublic.model_validate(e) for e in entries], next_cursor=next_cursor)


def _decode(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit() or int(cursor) >= 2**63:  # beyond BIGINT: PostgreSQL would fail, not answer
        raise Problem(422, "cursor must be the next_cursor of a previous page", title="Invalid request parameters")
    return int(cursor)

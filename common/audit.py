"""The audit log: who registered, deleted, created or revoked keys, published or rolled back models, and
when. Entries are added in the same transaction as the action they describe, so neither exists without
the other. Admins read them with GET /audit."""
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db.models import ApiKey, AuditEntry


def actor_of(key: ApiKey | None) -> str:
    return f"key {key.prefix}… ({key.name})" if key is not None else "cli"


def record(session: Session, *, action: str, key: ApiKey | None = None, actor: str | None = None,
           target: str | uuid.UUID | None = None, detail: dict | None = None) -> AuditEntry:
    """Add an entry; `actor` overrides the description derived from `key` (e.g. "system")."""
    entry = AuditEntry(actor_key_id=key.id if key is not None else None, actor=actor or actor_of(key),
                       action=action, target=str(target) if target is not None else None, detail=detail)
    session.add(entry)
    return entry


def list_entries(session: Session, *, before_id: int | None, limit: int,
                 action: str | None = None) -> list[AuditEntry]:
    """Newest first; `before_id` is the cursor (the last id of the previous page)."""
    query = select(AuditEntry)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))

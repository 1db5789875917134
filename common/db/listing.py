"""Filtered, keyset-paginated lists of works and attribution jobs (keyword-only arguments).

Pages are cut on (created_at, id), so the cost of a page does not grow with the table and a row
inserted meanwhile never shifts the next page (offset pagination does both). A cursor is the opaque
position of the last row of a page; nothing is counted unless the caller asks."""
import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, selectinload

from common.db.models import AttributionJob, JobStatus, Match, Work


class BadCursor(ValueError):
    """The cursor was not made by this service (or was edited)."""


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = json.dumps({"t": self.created_at.isoformat(), "i": str(self.id)}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> "Cursor":
        try:
            raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            return cls(datetime.fromisoformat(raw["t"]), uuid.UUID(raw["i"]))
        except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise BadCursor(f"not a cursor from this service: {token[:40]!r}") from exc


@dataclass(frozen=True)
class CreatedRange:
    after: datetime | None = None   # inclusive
    before: datetime | None = None  # exclusive


@dataclass
class Page:
    rows: list
    next_cursor: str | None


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _in_range(query: Select, column, created: CreatedRange) -> Select:
    if created.after is not None:
        query = query.where(column >= created.after)
    if created.before is not None:
        query = query.where(column < created.before)
    return query


def _page(session: Session, query: Select, model, *, cursor: str | None, limit: int, newest_first: bool) -> Page:
    """One page after `cursor`, ordered by (created_at, id); one extra row tells whether more follow."""
    if cursor is not None:
        at = Cursor.decode(cursor)
        # The leading inequality alone lets the database start the index range at the cursor; the OR
        # alone would make it scan from the first row (pages got slower the deeper they were).
        if newest_first:
            query = query.where(model.created_at <= at.created_at,
                                or_(model.created_at < at.created_at, model.id < at.id))
        else:
            query = query.where(model.created_at >= at.created_at,
                                or_(model.created_at > at.created_at, model.id > at.id))
    order = (model.created_at.desc(), model.id.desc()) if newest_first else (model.created_at, model.id)
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, Cursor(rows[-1].created_at, rows[-1].id).encode() if more else None)


def works_query(*, rights_holder: str | None = None, external_ref: str | None = None, title: str | None = None,
                q: str | None = None, created: CreatedRange = CreatedRange()) -> Select:
    """Live works matching every given filter: `title` and `q` are case-insensitive substrings
    (`q` searches the title and the external reference), `external_ref` is exact."""
    query = select(Work).where(Work.deleted_at.is_(None))
    if rights_holder is not None:
        query = query.where(Work.rights_holder == rights_holder)
    if external_ref is not None:
        query = query.where(Work.external_ref == external_ref)
    if title:
        query = query.where(Work.title.ilike(_like(title), escape="\\"))
    if q:
        query = query.where(or_(Work.title.ilike(_like(q), escape="\\"),
                                Work.external_ref.ilike(_like(q), escape="\\")))
    return _in_range(query, Work.created_at, created)


def list_works_page(session: Session, *, query: Select, cursor: str | None, limit: int) -> Page:
    """Oldest first, as the offset listing always was."""
    return _page(session, query.options(selectinload(Work.images)), Work, cursor=cursor, limit=limit,
                 newest_first=False)


def list_works_offset(session: Session, *, query: Select, offset: int, limit: int) -> list[Work]:
    """Deprecated offset pagination, kept for clients written against the first API."""
    return list(session.scalars(query.options(selectinload(Work.images))
                                .order_by(Work.created_at, Work.id).offset(offset).limit(limit)))


def count_rows(session: Session, *, query: Select) -> int:
    """A full count of the query: only when a client asks for it."""
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def find_live_work_by_external_ref(session: Session, *, rights_holder: str, external_ref: str,
                                   exclude: uuid.UUID | None = None) -> Work | None:
    query = works_query(rights_holder=rights_holder, external_ref=external_ref)
    if exclude is not None:
        query = query.where(Work.id != exclude)
    return session.scalars(query.order_by(Work.created_at).limit(1)).first()


def lock_external_ref(session: Session, *, rights_holder: str, external_ref: str) -> None:
    """Serialise writers of one (rights holder, external_ref) until commit, so two concurrent imports
    cannot both pass the uniqueness check. PostgreSQL: a transaction-scoped advisory lock; SQLite
    serialises writers itself."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"extref|{rights_holder}|{external_ref}"))))


def jobs_query(*, client_key_id: uuid.UUID | None = None, status: JobStatus | None = None,
               created: CreatedRange = CreatedRange()) -> Select:
    query = select(AttributionJob)
    if client_key_id is not None:
        query = query.where(AttributionJob.client_key_id == client_key_id)
    if status is not None:
        query = query.where(AttributionJob.status == status)
    return _in_range(query, AttributionJob.created_at, created)


def list_jobs_page(session: Session, *, query: Select, cursor: str | None, limit: int) -> Page:
    """Newest first, with matches and their works loaded for the response."""
    loaded = query.options(selectinload(AttributionJob.matches).selectinload(Match.work),
                           selectinload(AttributionJob.deliveries))
    return _page(session, loaded, AttributionJob, cursor=cursor, limit=limit, newest_first=True)

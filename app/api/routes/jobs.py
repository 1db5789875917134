"""A key's own attribution jobs, a page at a time, or all of them as CSV (admins see every key's)."""
import csv
import io
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Select

from app.api.deps import SessionDep
from app.api.routes.attributions import attribution_public
from app.problems import Problem, invalid_parameter
from app.schemas import AttributionsPublic, JobFilters
from app.security import JobReaderKey
from common.db import listing
from common.db.listing import CreatedRange
from common.db.models import ApiKey, AttributionJob, Scope
from common.db.session import new_session

router = APIRouter(prefix="/attribute", tags=["attribution"])

CSV_COLUMNS = ("job_id", "status", "created_at", "finished_at", "top_k", "encoder_id", "index_id", "error",
               "unattributed", "rank", "work_id", "title", "rights_holder", "score", "share")
_EXPORT_PAGE = 500


@router.get("", response_model=AttributionsPublic,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "a page of jobs (JSON), or every matching job with `format=csv`"}})
def read_attributions(key: JobReaderKey, request: Request, session: SessionDep,
                      filters: Annotated[JobFilters, Query()]):
    """Your attribution jobs, newest first (admins and reviewers: everyone's, or one key's with `key_id`)."""
    query = listing.jobs_query(client_key_id=_listed_key(key, filters.key_id), status=filters.status,
                               created=CreatedRange(filters.created_after, filters.created_before))
    _check_cursor(filters.cursor)
    if filters.format == "csv":
        return StreamingResponse(_csv_rows(query, filters.cursor), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="attributions.csv"'})
    page = listing.list_jobs_page(session, query=query, cursor=filters.cursor, limit=filters.limit)
    return AttributionsPublic(data=[attribution_public(request, job) for job in page.rows],
                              next_cursor=page.next_cursor)


def _listed_key(key: ApiKey, requested) -> object:
    """Attributors list their own jobs only; naming another key is refused rather than ignored. Reviewers
    read every job (they give verdicts on them), so they list every job too."""
    if key.scope in (Scope.admin, Scope.reviewer):
        return requested
    if requested is not None and requested != key.id:
        raise Problem(403, "this key lists its own jobs only", title="Forbidden")
    return key.id


def _check_cursor(cursor: str | None) -> None:
    if cursor is not None:
        try:
            listing.Cursor.decode(cursor)
        except listing.BadCursor as exc:
            raise invalid_parameter(["query", "cursor"], str(exc)) from exc


def _csv_rows(query: Select, cursor: str | None) -> Iterator[str]:
    """Stream the export page by page in its own session (the request's closes before streaming ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    with new_session() as session:
        while True:
            page = listing.list_jobs_page(session, query=query, cursor=cursor, limit=_EXPORT_PAGE)
            for job in page.rows:
                writer.writerows([[_cell(value) for value in row] for row in _job_rows(job)])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            session.expunge_all()
            if (cursor := page.next_cursor) is None:
                return


def _job_rows(job: AttributionJob) -> list[list]:
    """One row per live match (a deleted work's share joins `unattributed`, as in the JSON)."""
    live = [m for m in job.matches if m.work.deleted_at is None]
    hidden = sum(m.share for m in job.matches if m.work.deleted_at is not None)
    unattributed = None if job.unattributed is None else min(1.0, job.unattributed + hidden)
    head = [job.id, job.status.value, _iso(job.created_at), _iso(job.finished_at), job.top_k, job.encoder_id,
            job.index_id, job.error, unattributed]
    if not live:
        return [head + [None] * 6]
    return [head + [rank, m.work_id, m.work.title, m.work.rights_holder, m.score, m.share]
            for rank, m in enumerate(live, start=1)]


def _cell(value) -> object:
    """Titles come from other users: a cell a spreadsheet would run as a formula is quoted (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None

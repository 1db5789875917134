"""Two small JSON endpoints the console needs: who the key is (to show the pages its scope may use), and
for admins the service state in one read (serving model, queue, workers' indexes, counts)."""

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import func, select

from app.api.deps import RedisDep, SessionDep, SettingsDep
from app.console.reports import report_url
from app.security import AdminKey, CurrentKey
from common.db import crud
from common.db.models import AttributionJob, SourceImage, Verdict, Work
from common.jobs import backlog, get_queues, live_heartbeats

router = APIRouter(tags=["console"], include_in_schema=False)  # the console's own JSON, not the public API


class SessionPublic(BaseModel):
    id: str
    name: str
    scope: str
    rights_holder: str | None
    prefix: str


@router.get("/console/session", response_model=SessionPublic, operation_id="read_console_session")
def read_console_session(key: CurrentKey) -> SessionPublic:
    """The calling key's name and scope (never its secret): the console signs in with it."""
    return SessionPublic(id=str(key.id), name=key.name, scope=key.scope.value, rights_holder=key.rights_holder, prefix=key.prefix)


@router.get("/admin/status", operation_id="read_admin_status")
def read_admin_status(_: AdminKey, session: SessionDep, redis: RedisDep, settings: SettingsDep) -> dict:
    """Serving model, queue depth, workers and their indexes, and row counts by state."""
    return {"serving": _serving(session, settings), "queue": _queue(redis, settings.queue_name),
            "workers": _workers(redis, settings.queue_name), "counts": _counts(session)}


def _serving(session, settings) -> dict:
    pair = crud.get_active_pair(session)
    if pair is None:
        return {"source": "settings (no published pair)", "encoder": settings.encoder}
    return {"source": "published pair", "pair_id": pair.id, "encoder_id": pair.encoder_id,
            "index_id": pair.index_id, "activated_at": pair.activated_at.isoformat() if pair.activated_at else None,
            "report": pair.report, "report_url": report_url(pair)}


def _queue(redis, name: str) -> dict:
    """Per queue of the deployment (attribution first, then embedding: common.jobs)."""
    shown: dict[str, int] = {}
    for queue in get_queues(redis, name).by_kind():
        shown |= {f"{queue.name} queued": backlog(queue), f"{queue.name} started": queue.started_job_registry.count,
                  f"{queue.name} failed": queue.failed_job_registry.count}
    return shown


def _workers(redis, queue_name: str) -> list[dict]:
    return live_heartbeats(redis, queue_name)


def _counts(session) -> dict:
    def by(column, *where):
        rows = session.execute(select(column, func.count()).where(*where).group_by(column))
        return {getattr(k, "value", str(k)): n for k, n in rows}
    return {"works": session.scalar(select(func.count()).where(Work.deleted_at.is_(None))),
            "images": by(SourceImage.state), "jobs": by(AttributionJob.status), "verdicts": by(Verdict.verdict)}

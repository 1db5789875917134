"""Submitting a synthetic image for attribution and reading the ranked works."""
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from app.api.deps import QueuesDep, SessionDep, SettingsDep, StorageDep, refuse_when_full
from app.api.routes.webhooks import checked_callback_url
from app.problems import Problem
from app.schemas import AttributionPublic, DeliveryPublic, MatchPublic
from app.security import AttributorKey
from app.uploads import read_checked_image
from common.db import crud
from common.db.models import AttributionJob, JobStatus, Scope
from common.db.session import new_session
from common.jobs import enqueue_attribution
from common.storage import LocalStorage

router = APIRouter(prefix="/attribute", tags=["attribution"])
_FINISHED = (JobStatus.done, JobStatus.failed)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=AttributionPublic,
             responses={200: {"model": AttributionPublic, "description": "finished within `wait`"}})
def create_attribution(
    key: AttributorKey, request: Request, response: Response, session: SessionDep, settings: SettingsDep,
    storage: StorageDep, queues: QueuesDep,
    image: Annotated[UploadFile, File(description="the synthetic image to attribute")],
    top_k: Annotated[int | None, Query(ge=1, le=100, description="how many works to return")] = None,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for the result")] = 0,
    allow_training: Annotated[bool, Query(description="let this image train the encoder (if enabled)")] = False,
    callback_url: Annotated[str | None, Form(max_length=2000, description="POSTed the signed result when the job finishes")] = None,
) -> AttributionPublic:
    """Queue an attribution job; with `wait`, answer with the result if it is ready in time."""
    top_k = min(top_k or settings.default_top_k, settings.max_top_k)
    _refuse_when_full(queues, settings)
    callback_url = checked_callback_url(session, key.id, callback_url, settings)
    checked = read_checked_image(image, settings)
    # One file per job (not per content hash): a finished job deletes its query image, and that must
    # never remove the file of another job that submitted the same bytes.
    job_id = uuid.uuid4()
    storage_key = LocalStorage.key_for("queries", job_id.hex, checked.extension)
    storage.put(storage_key, checked.data)
    job = crud.create_job(session, job_id=job_id, query_sha256=checked.sha256, storage_key=storage_key,
                          top_k=top_k,
                          training_use=allow_training and settings.collect_queries_for_training,
                          client_key_id=key.id, callback_url=callback_url)
    session.commit()
    try:
        enqueue_attribution(queues.attribute, str(job.id))
    except RedisError as exc:
        _fail_unqueued(session, storage, job)
        raise Problem(503, "the job queue (Redis) cannot be reached; retry shortly",
                      title="Queue unavailable", headers={"Retry-After": "5"}) from exc
    if wait > 0:
        job = _wait_for(job.id, min(wait, settings.max_wait_seconds)) or job
    if job.status in _FINISHED:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = _status_url(request, job.id)
    return attribution_public(request, job)


def _refuse_when_full(queues, settings) -> None:
    try:
        refuse_when_full(queues.attribute, settings.max_queued_attributions, settings.queue_full_retry_after_s,
                         "attribution")
    except RedisError as exc:
        raise Problem(503, "the job queue (Redis) cannot be reached; retry shortly",
                      title="Queue unavailable", headers={"Retry-After": "5"}) from exc


def _fail_unqueued(session: Session, storage: LocalStorage, job: AttributionJob) -> None:
    job.status, job.error = JobStatus.failed, "the job queue was unavailable when the job was submitted"
    session.commit()
    storage.delete(job.storage_key)


def _wait_for(job_id: uuid.UUID, seconds: float) -> AttributionJob | None:
    """Poll the job's row (its source of truth, never Redis results), backing off from 50 ms to 0.5 s.
    Runs in the thread pool (sync route), so a waiting client never blocks the event loop."""
    deadline, pause = time.monotonic() + seconds, 0.05
    while True:
        job = _load_job(job_id)
        if job is None or job.status in _FINISHED or time.monotonic() >= deadline:
            return job
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.5)


def _load_job(job_id: uuid.UUID) -> AttributionJob | None:
    with new_session() as session:
        return crud.get_job(session, job_id=job_id)


@router.get("/{job_id}", response_model=AttributionPublic)
def read_attribution(key: AttributorKey, request: Request, session: SessionDep,
                     job_id: uuid.UUID) -> AttributionPublic:
    """Status of a job and, when done, the ranked works with their calibrated shares."""
    job = crud.get_job(session, job_id=job_id)
    if job is None or (key.scope != Scope.admin and job.client_key_id != key.id):
        raise Problem(404, f"no attribution job with id {job_id}", title="Unknown job")
    return attribution_public(request, job)


def _status_url(request: Request, job_id: uuid.UUID) -> str:
    return str(request.url_for("read_attribution", job_id=job_id))


def attribution_public(request: Request, job: AttributionJob) -> AttributionPublic:
    done = job.status == JobStatus.done
    return AttributionPublic(
        id=job.id, status=job.status, status_url=_status_url(request, job.id), created_at=job.created_at,
        finished_at=job.finished_at, error=job.error, top_k=job.top_k, encoder_id=job.encoder_id,
        index_id=job.index_id, index_size=job.index_size,
        matches=_live_matches(job) if done else None,
        unattributed=_unattributed(job) if done else None,
        deliveries=[DeliveryPublic.model_validate(d) for d in job.deliveries] if job.callback_url else None)


def _live_matches(job: AttributionJob) -> list[MatchPublic]:
    # A work deleted after the job ran never appears again; its share joins "unattributed".
    live = [m for m in job.matches if m.work.deleted_at is None]
    return [MatchPublic(rank=rank, work_id=m.work_id, title=m.work.title, rights_holder=m.work.rights_holder,
                        score=m.score, share=m.share) for rank, m in enumerate(live, start=1)]


def _unattributed(job: AttributionJob) -> float:
    hidden = sum(m.share for m in job.matches if m.work.deleted_at is not None)
    return min(1.0, (job.unattributed or 0.0) + hidden)

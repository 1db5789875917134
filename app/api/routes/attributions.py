"""Submitting a synthetic image for attribution and reading the ranked works."""
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from redis.exceptions import RedisError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import QueuesDep, SettingsDep, StorageDep, refuse_when_full
from app.api.routes.webhooks import checked_callback_url
from app.problems import Problem
from app.public_urls import public_url
from app.schemas import AttributionPublic, CalibrationPublic, DeliveryPublic, MatchPublic
from app.security import AttributorKey, JobReaderKey
from app.uploads import read_checked_image
from app.waiting import JobEvents
from common.db import crud
from common.db.models import ApiKey, AttributionJob, JobStatus, Scope
from common.db.session import new_session
from common.jobs import enqueue_attribution
from common.logging_config import bind
from common.settings import Settings, get_settings
from common.storage import Storage, key_for

router = APIRouter(prefix="/attribute", tags=["attribution"])
_FINISHED = (JobStatus.done, JobStatus.failed)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=AttributionPublic,
             responses={200: {"model": AttributionPublic, "description": "finished within `wait`"}})
async def create_attribution(
    key: AttributorKey, request: Request, response: Response, settings: SettingsDep,
    storage: StorageDep, queues: QueuesDep,
    image: Annotated[UploadFile, File(description="the synthetic image to attribute")],
    top_k: Annotated[int | None, Query(ge=1, le=100, description="how many works to return")] = None,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for the result")] = 0,
    allow_training: Annotated[bool, Query(description="let this image train the encoder (if enabled)")] = False,
    callback_url: Annotated[str | None, Form(max_length=2000, description="POSTed the signed result when the job finishes")] = None,
) -> AttributionPublic:
    """Queue an attribution job; with `wait`, answer with the result if it is ready in time."""
    # The queue bound, the upload check, the database work and the enqueue block, so they run in the thread
    # pool, in one hand-over (each one more is a wait for a thread under load: app.api.deps); the wait that
    # follows holds no thread (app/waiting.py), so waiting clients can never starve the others.
    job = await run_in_threadpool(_submit, key=key, settings=settings, storage=storage, queues=queues,
                                  upload=image, top_k=top_k, allow_training=allow_training,
                                  callback_url=callback_url)
    return await _answer(request, response, job, key, min(wait, settings.max_wait_seconds))


def _submit(*, key: ApiKey, settings: Settings, storage: Storage, queues, upload: UploadFile,
            top_k: int | None, allow_training: bool, callback_url: str | None) -> AttributionJob:
    _refuse_when_full(queues, settings)  # before anything is stored
    with new_session() as session:
        job = _create_and_enqueue(session, key=key, settings=settings, storage=storage, queue=queues.attribute,
                                  upload=upload, top_k=top_k, allow_training=allow_training,
                                  callback_url=callback_url)
        if job.callback_url:  # the answer lists the deliveries after this session has closed
            session.refresh(job, attribute_names=["deliveries"])
        return job


def _create_and_enqueue(session: Session, *, key: ApiKey, settings: Settings, storage: Storage, queue,
                        upload: UploadFile, top_k: int | None, allow_training: bool,
                        callback_url: str | None) -> AttributionJob:
    callback_url = checked_callback_url(session, key.id, callback_url, settings)
    checked = read_checked_image(upload, settings)
    # One file per job (not per content hash): a finished job deletes its query image, and that must
    # never remove the file of another job that submitted the same bytes.
    job_id = uuid.uuid4()
    storage_key = key_for("queries", job_id.hex, checked.extension)
    storage.put(storage_key, checked.data)
    try:
        job = crud.create_job(session, job_id=job_id, query_sha256=checked.sha256, storage_key=storage_key,
                              top_k=min(top_k or settings.default_top_k, settings.max_top_k),
                              training_use=allow_training and settings.collect_queries_for_training,
                              client_key_id=key.id, callback_url=callback_url)
        session.commit()
    except BaseException:
        session.rollback()
        storage.delete(storage_key)  # the file is only kept when its row commits
        raise
    bind(job_id=job.id)
    try:
        enqueue_attribution(queue, str(job.id))
    except RedisError as exc:
        _fail_unqueued(session, storage, job)
        raise Problem(503, "the job queue (Redis) cannot be reached; retry shortly",
                      title="Queue unavailable", headers={"Retry-After": "5"}) from exc
    return job


def _refuse_when_full(queues, settings) -> None:
    try:
        refuse_when_full(queues.attribute, settings.max_queued_attributions, settings.queue_full_retry_after_s,
                         "attribution")
    except RedisError as exc:
        raise Problem(503, "the job queue (Redis) cannot be reached; retry shortly",
                      title="Queue unavailable", headers={"Retry-After": "5"}) from exc


def _fail_unqueued(session: Session, storage: Storage, job: AttributionJob) -> None:
    job.status, job.error = JobStatus.failed, "the job queue was unavailable when the job was submitted"
    session.commit()
    storage.delete(job.storage_key)


async def _answer(request: Request, response: Response, job: AttributionJob, key: ApiKey,
                  wait: float) -> AttributionPublic:
    if wait > 0 and job.status not in _FINISHED:
        job = await _wait_for(request, job.id, key, wait) or job
    if job.status in _FINISHED:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = status_url(request, job.id)
    return attribution_public(request, job)


async def _wait_for(request: Request, job_id: uuid.UUID, key: ApiKey, seconds: float) -> AttributionJob | None:
    """The job's row once it is finished or `seconds` have passed; None when over a wait cap."""
    events: JobEvents | None = getattr(request.app.state, "job_events", None)
    if events is None:  # an app run without its lifespan (no listener): safety re-reads only
        settings = get_settings()
        events = request.app.state.job_events = JobEvents(
            None, max_waits=settings.max_concurrent_waits, max_waits_per_key=settings.max_concurrent_waits_per_key,
            recheck_s=settings.wait_recheck_s)
    return await events.wait_for(str(job_id), key_id=str(key.id), seconds=seconds,
                                 load=lambda: run_in_threadpool(_load_job, job_id),
                                 finished=lambda job: job.status in _FINISHED)


def _load_job(job_id: uuid.UUID) -> AttributionJob | None:
    with new_session() as session:
        return crud.get_job(session, job_id=job_id)


@router.get("/{job_id}", response_model=AttributionPublic)
async def read_attribution(key: JobReaderKey, request: Request, response: Response, settings: SettingsDep,
                           job_id: uuid.UUID,
                           wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for the "
                                                                                 "job to finish")] = 0,
                           ) -> AttributionPublic:
    """Status of a job and, when done, the ranked works with their calibrated shares (its owner, reviewers
    and admins)."""
    job = await run_in_threadpool(_load_job, job_id)
    if job is None or (key.scope not in (Scope.admin, Scope.reviewer) and job.client_key_id != key.id):
        raise Problem(404, f"no attribution job with id {job_id}", title="Unknown job")
    if wait > 0 and job.status not in _FINISHED:
        job = await _wait_for(request, job.id, key, min(wait, settings.max_wait_seconds)) or job
    return attribution_public(request, job)


def status_url(request: Request, job_id: uuid.UUID) -> str:
    """Never built from the Host header (host-header injection): the configured public base URL,
    else a path relative to the API's root."""
    return public_url(request, request.app.url_path_for("read_attribution", job_id=job_id))


def attribution_public(request: Request, job: AttributionJob) -> AttributionPublic:
    done = job.status == JobStatus.done
    return AttributionPublic(
        id=job.id, status=job.status, status_url=status_url(request, job.id), created_at=job.created_at,
        finished_at=job.finished_at, error=job.error, top_k=job.top_k, encoder_id=job.encoder_id,
        index_id=job.index_id, index_size=job.index_size, pair_id=job.pair_id,
        calibration=CalibrationPublic.model_validate(job.calibration) if job.calibration else None,
        matches=_live_matches(request, job) if done else None,
        unattributed=_unattributed(job) if done else None,
        deliveries=[DeliveryPublic.model_validate(d) for d in job.deliveries] if job.callback_url else None,
        # The worker makes the query's thumbnail before the result commits (common.thumbnails).
        query_thumbnail_url=public_url(request, request.app.url_path_for("read_query_thumbnail", job_id=job.id))
        if done else None)


def _live_matches(request: Request, job: AttributionJob) -> list[MatchPublic]:
    # A work deleted after the job ran never appears again; its share joins "unattributed".
    live = [m for m in job.matches if m.work.deleted_at is None]
    return [MatchPublic(rank=rank, work_id=m.work_id, title=m.work.title, rights_holder=m.work.rights_holder,
                        score=m.score, share=m.share, best_image_id=m.best_image_id,
                        external_ref=m.work.external_ref, licence=m.work.licence,
                        thumbnail_url=_thumbnail_url(request, m)) for rank, m in enumerate(live, start=1)]


def _thumbnail_url(request: Request, match) -> str | None:
    if match.best_image_id is None:
        return None
    return public_url(request, request.app.url_path_for("read_source_thumbnail", work_id=match.work_id,
                                                        image_id=match.best_image_id))


def _unattributed(job: AttributionJob) -> float:
    hidden = sum(m.share for m in job.matches if m.work.deleted_at is not None)
    return min(1.0, (job.unattributed or 0.0) + hidden)

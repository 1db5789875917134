"""Reviewers' verdicts on a job's matches: this is the work (confirm), not this work (reject), or none
of these. Each verdict copies the query's embedding from the job row, so it stays a usable label after
the query image is deleted; the image itself is referenced only when its client allowed training use."""
import uuid
from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field, model_validator

from app.api.deps import SessionDep, StorageDep
from app.problems import Problem
from app.security import JobReaderKey, ReviewerKey
from common.db import crud, review
from common.db.models import AttributionJob, JobStatus, Scope, VerdictKind
from common.storage import Storage

router = APIRouter(prefix="/attribute/{job_id}/verdicts", tags=["verdicts"])


class VerdictCreate(BaseModel):
    verdict: VerdictKind
    work_id: uuid.UUID | None = Field(default=None, description="required for confirm and reject")

    @model_validator(mode="after")
    def _work_matches_kind(self) -> "VerdictCreate":
        if self.verdict == VerdictKind.none_of_these and self.work_id is not None:
            raise ValueError("none_of_these takes no work_id")
        if self.verdict != VerdictKind.none_of_these and self.work_id is None:
            raise ValueError(f"{self.verdict.value} needs the work_id it judges")
        return self


class VerdictPublic(BaseModel):
    id: int
    job_id: uuid.UUID | None
    work_id: uuid.UUID | None
    verdict: VerdictKind
    reviewer_key_id: uuid.UUID
    created_at: datetime
    encoder_id: str
    query_image_kept: bool = Field(description="the query image is kept for training (client allowed it)")


def verdict_public(row) -> VerdictPublic:
    return VerdictPublic(id=row.id, job_id=row.job_id, work_id=row.work_id, verdict=row.verdict,
                         reviewer_key_id=row.reviewer_key_id, created_at=row.created_at,
                         encoder_id=row.encoder_id, query_image_kept=row.query_storage_key is not None)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=VerdictPublic)
def create_verdict(key: ReviewerKey, session: SessionDep, storage: StorageDep, job_id: uuid.UUID,
                   body: VerdictCreate) -> VerdictPublic:
    """Record a verdict on one of the job's matches (or that none of them is the source)."""
    job = _finished_job(session, job_id)
    if body.work_id is not None and crud.get_work(session, work_id=body.work_id) is None:
        raise Problem(422, f"no work with id {body.work_id}", title="Unknown work")
    row = review.record_verdict(session, job=job, work_id=body.work_id, verdict=body.verdict,
                                reviewer_key_id=key.id, query_storage_key=_kept_query(storage, job))
    session.commit()
    return verdict_public(row)


def _finished_job(session, job_id: uuid.UUID) -> AttributionJob:
    job = crud.get_job(session, job_id=job_id)
    if job is None:
        raise Problem(404, f"no attribution job with id {job_id}", title="Unknown job")
    if job.status != JobStatus.done:
        raise Problem(409, f"the job is {job.status.value}; verdicts are given on finished jobs",
                      title="Job not finished")
    if job.query_vector is None or job.encoder_id is None:
        raise Problem(409, "this job ran before query embeddings were kept; it cannot take verdicts",
                      title="No query embedding")
    return job


def _kept_query(storage: Storage, job: AttributionJob) -> str | None:
    """The query image only when its client allowed training use (otherwise it is already deleted),
    copied under the verdicts' own content-addressed key: job retention deletes the job's file."""
    if not (job.training_use and storage.exists(job.storage_key)):
        return None
    key = f"verdicts/{job.query_sha256[:2]}/{job.query_sha256}.{job.storage_key.rsplit('.', 1)[-1]}"
    storage.put(key, storage.get(job.storage_key))
    return key


@router.get("", response_model=list[VerdictPublic])
def read_verdicts(key: JobReaderKey, session: SessionDep, job_id: uuid.UUID) -> list[VerdictPublic]:
    """The verdicts given on a job (its owner and reviewers may read them)."""
    job = crud.get_job(session, job_id=job_id)
    if job is None or (key.scope not in (Scope.admin, Scope.reviewer) and job.client_key_id != key.id):
        raise Problem(404, f"no attribution job with id {job_id}", title="Unknown job")
    return [verdict_public(v) for v in review.list_verdicts_of_job(session, job_id=job_id)]

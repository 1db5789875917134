"""Registering, listing and deleting works (source concepts) and their images."""
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from redis.exceptions import RedisError

from app.api.deps import QueuesDep, SessionDep, SettingsDep, StorageDep, refuse_when_full
from app.keycache import CachedKey
from app.problems import Problem
from app.schemas import WorkPublic, WorksPublic
from app.security import RegistrarKey, owns_rights_holder
from app.uploads import read_checked_image
from common.audit import record
from common.bulk import store_source_image
from common.db import crud
from common.db.models import Scope, SourceImage, Work
from common.images import CheckedImage
from common.jobs import enqueue_embedding

router = APIRouter(prefix="/sources", tags=["sources"])
log = logging.getLogger(__name__)


def work_public(work: Work) -> WorkPublic:
    return WorkPublic.model_validate(work, from_attributes=True)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WorkPublic,
             responses={200: {"model": WorkPublic, "description": "identical images already registered"}})
def create_source(
    key: RegistrarKey, session: SessionDep, settings: SettingsDep, storage: StorageDep, queues: QueuesDep,
    response: Response,
    images: Annotated[list[UploadFile], File(description="one or more images of the work")],
    title: Annotated[str, Form(min_length=1, max_length=300)],
    rights_holder: Annotated[str | None, Form(min_length=1, max_length=200,
                                              description="defaults to the registrar key's own")] = None,
    external_ref: Annotated[str | None, Form(max_length=500)] = None,
    licence: Annotated[str | None, Form(max_length=200)] = None,
) -> WorkPublic:
    """Register a work; its images are embedded by a worker, after which it is searchable."""
    rights_holder = _rights_holder_for(key, rights_holder)
    refuse_when_full(queues.embed, settings.max_queued_embed_jobs, settings.queue_full_retry_after_s, "embedding")
    if len(images) > settings.max_images_per_work:
        raise Problem(422, f"a work may have at most {settings.max_images_per_work} images, got {len(images)}")
    checked = _unique_by_hash([read_checked_image(upload, settings) for upload in images])
    existing = crud.find_live_images_by_hash(session, rights_holder=rights_holder, hashes=checked)
    if existing:
        response.status_code = status.HTTP_200_OK
        return work_public(_existing_work_or_conflict(session, checked, existing))
    # Files live under their work's id, so deleting a work can never remove another work's file.
    work_id = uuid.uuid4()
    work = crud.create_work(session, work_id=work_id, title=title, rights_holder=rights_holder,
                            external_ref=external_ref, licence=licence,
                            images=[store_source_image(storage, work_id, image) for image in checked.values()])
    record(session, action="work.register", key=key, target=work_id,
           detail={"title": title, "rights_holder": rights_holder, "images": len(checked)})
    session.commit()
    _enqueue_quietly(queues.embed, work)
    return work_public(work)


def _rights_holder_for(key: CachedKey, requested: str | None) -> str:
    """Registrars act for their own rights holder only; admins must name one."""
    if key.scope == Scope.admin:
        if requested is None:
            raise Problem(422, "rights_holder is required", title="Invalid request parameters")
        return requested
    if requested is not None and requested != key.rights_holder:
        raise Problem(403, f"this key registers works for {key.rights_holder!r} only", title="Forbidden")
    return key.rights_holder


def _unique_by_hash(images: list[CheckedImage]) -> dict[str, CheckedImage]:
    return {image.sha256: image for image in images}


def _existing_work_or_conflict(session, checked: dict[str, CheckedImage],
                               existing: dict[str, SourceImage]) -> Work:
    """Identical bytes re-registered: return the one work that already holds them all, else 409."""
    work_ids = {image.work_id for image in existing.values()}
    if len(existing) == len(checked) and len(work_ids) == 1:
        return crud.get_work(session, work_id=work_ids.pop())
    raise Problem(409, "some of these images are already registered for this rights holder in other works",
                  title="Duplicate images", duplicates={h: str(i.work_id) for h, i in existing.items()})


def _enqueue_quietly(queue, work: Work) -> None:
    # The rows are committed; if Redis is down the worker's recovery pass embeds pending images later.
    # One job per work (at most max_images_per_work images), named by the work so a repeat replaces it.
    try:
        enqueue_embedding(queue, [image.id for image in work.images], job_id=f"embed-{work.id}")
    except RedisError:
        log.warning("queue unavailable; work %s stays pending until a worker recovers it", work.id)


@router.get("", response_model=WorksPublic)
def read_sources(key: RegistrarKey, session: SessionDep, offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
                 limit: Annotated[int, Query(ge=1, le=100)] = 20,
                 rights_holder: Annotated[str | None, Query(max_length=200)] = None) -> WorksPublic:
    """List live works, oldest first (a registrar sees only its own rights holder's)."""
    if key.scope != Scope.admin:
        rights_holder = key.rights_holder
    works, total = crud.list_works(session, offset=offset, limit=limit, rights_holder=rights_holder)
    return WorksPublic(data=[work_public(w) for w in works], count=total, offset=offset, limit=limit)


@router.get("/{work_id}", response_model=WorkPublic)
def read_source(key: RegistrarKey, session: SessionDep, work_id: uuid.UUID) -> WorkPublic:
    """One work with its images and their embedding state."""
    return work_public(_get_or_404(session, key, work_id))


@router.delete("/{work_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_source(key: RegistrarKey, session: SessionDep, storage: StorageDep, work_id: uuid.UUID) -> Response:
    """Delete a work: it leaves every result at once, and its vectors and files are removed."""
    work = _get_or_404(session, key, work_id)
    unused_files = crud.delete_work(session, work=work)
    record(session, action="work.delete", key=key, target=work_id,
           detail={"title": work.title, "rights_holder": work.rights_holder})
    session.commit()
    for storage_key in unused_files:
        storage.delete(storage_key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _get_or_404(session, key: CachedKey, work_id: uuid.UUID) -> Work:
    # Another rights holder's work answers exactly like a missing one: its existence is not revealed.
    work = crud.get_work(session, work_id=work_id)
    if work is None or not owns_rights_holder(key, work.rights_holder):
        raise Problem(404, f"no work with id {work_id}", title="Unknown work")
    return work

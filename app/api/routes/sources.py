"""Registering, listing, changing and deleting works (source concepts) and their images."""
import logging
import uuid
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from redis.exceptions import RedisError

from app.api.deps import QueuesDep, SessionDep, SettingsDep, StorageDep, refuse_when_full
from app.keycache import CachedKey
from app.problems import Problem, invalid_parameter
from app.public_urls import public_url
from app.schemas import Storable, WorkFilters, WorkPublic, WorksPublic, WorkUpdate
from app.security import RegistrarKey, owns_rights_holder
from app.uploads import read_checked_image
from common.audit import record
from common.db import crud, listing
from common.db.listing import CreatedRange
from common.db.models import Scope, Work
from common.jobs import enqueue_embedding
from common.registration import (
    Metadata, Registrant, RegistrationRefused, check_external_ref_free, external_ref_used, register,
    rights_holder_for,
)
from common.thumbnails import source_thumbnails_prefix

router = APIRouter(prefix="/sources", tags=["sources"])
log = logging.getLogger(__name__)


def work_public(work: Work) -> WorkPublic:
    return WorkPublic.model_validate(work, from_attributes=True)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WorkPublic,
             responses={200: {"model": WorkPublic, "description": "identical images already registered"}})
def create_source(
    key: RegistrarKey, session: SessionDep, settings: SettingsDep, storage: StorageDep, queues: QueuesDep,
    request: Request, response: Response,
    images: Annotated[list[UploadFile], File(description="one or more images of the work")],
    title: Annotated[str, Form(min_length=1, max_length=300), Storable],
    rights_holder: Annotated[str | None, Form(min_length=1, max_length=200,
                                              description="defaults to the registrar key's own"), Storable] = None,
    external_ref: Annotated[str | None, Form(max_length=500), Storable] = None,
    licence: Annotated[str | None, Form(max_length=200), Storable] = None,
) -> WorkPublic:
    """Register a work; its images are embedded by a worker, after which it is searchable."""
    registrant = Registrant(key.scope, key.rights_holder, key)
    with refusals_as_problems():
        rights_holder = rights_holder_for(registrant, rights_holder)
    refuse_when_full(queues.embed, settings.max_queued_embed_jobs, settings.queue_full_retry_after_s, "embedding")
    if len(images) > settings.max_images_per_work:
        raise Problem(422, f"a work may have at most {settings.max_images_per_work} images, got {len(images)}")
    checked = {image.sha256: image for image in (read_checked_image(upload, settings) for upload in images)}
    with refusals_as_problems():
        outcome = register(session, storage, registrant, rights_holder, checked,
                           Metadata(title, external_ref, licence), unique_external_ref=settings.unique_external_ref)
        if outcome.why == "external_ref":
            raise external_ref_used(external_ref, outcome.work_id)
    work = crud.get_work(session, work_id=outcome.work_id)
    if not outcome.created:  # these exact images are already this work
        response.status_code = status.HTTP_200_OK
        return work_public(work)
    _enqueue_quietly(queues.embed, work)
    response.headers["Location"] = public_url(request, request.app.url_path_for("read_source", work_id=work.id))
    return work_public(work)


@contextmanager
def refusals_as_problems():
    """A registration rule's refusal (common.registration) as the problem response it stands for."""
    try:
        yield
    except RegistrationRefused as exc:
        raise Problem(exc.status, exc.detail, title=exc.title, type_=exc.type,
                      **({"reason": exc.reason} if exc.status != 409 else {}), **exc.extra) from exc


def _enqueue_quietly(queue, work: Work) -> None:
    # The rows are committed; if Redis is down the worker's recovery pass embeds pending images later.
    # One job per work (at most max_images_per_work images), named by the work so a repeat replaces it.
    try:
        enqueue_embedding(queue, [image.id for image in work.images], job_id=f"embed-{work.id}")
    except RedisError:
        log.warning("queue unavailable; work %s stays pending until a worker recovers it", work.id)


@router.get("", response_model=WorksPublic)
def read_sources(key: RegistrarKey, session: SessionDep, filters: Annotated[WorkFilters, Query()]) -> WorksPublic:
    """List live works, oldest first, a page at a time (a registrar sees only its own rights holder's).
    Pass `next_cursor` back as `cursor` for the next page; `offset` still works but is deprecated."""
    query = listing.works_query(rights_holder=_listed_rights_holder(key, filters.rights_holder),
                                external_ref=filters.external_ref, title=filters.title, q=filters.q,
                                created=CreatedRange(filters.created_after, filters.created_before))
    # The deprecated offset pages keep their count, so clients of the first API read what they always did.
    wants_count = filters.with_count or filters.offset is not None
    count = listing.count_rows(session, query=query) if wants_count else None
    if filters.offset is not None:
        works = listing.list_works_offset(session, query=query, offset=filters.offset, limit=filters.limit)
        return WorksPublic(data=[work_public(w) for w in works], count=count, offset=filters.offset,
                           limit=filters.limit, next_cursor=None)
    try:
        page = listing.list_works_page(session, query=query, cursor=filters.cursor, limit=filters.limit)
    except listing.BadCursor as exc:
        raise invalid_parameter(["query", "cursor"], str(exc)) from exc
    return WorksPublic(data=[work_public(w) for w in page.rows], count=count, offset=None, limit=filters.limit,
                       next_cursor=page.next_cursor)


def _listed_rights_holder(key: CachedKey, requested: str | None) -> str | None:
    """Admins may filter by any rights holder; a registrar naming another one is refused, not ignored."""
    if key.scope == Scope.admin:
        return requested
    if requested is not None and requested != key.rights_holder:
        raise Problem(403, f"this key lists works of {key.rights_holder!r} only", title="Forbidden")
    return key.rights_holder


@router.patch("/{work_id}", response_model=WorkPublic)
def update_source(key: RegistrarKey, session: SessionDep, settings: SettingsDep, work_id: uuid.UUID,
                  body: WorkUpdate) -> WorkPublic:
    """Change a work's title, external reference or licence (images are changed by registering anew)."""
    work = _get_or_404(session, key, work_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("title", "") is None:
        raise invalid_parameter(["body", "title"], "a work keeps a title; it cannot be set to null")
    if changes.get("external_ref") is not None and settings.unique_external_ref:
        with refusals_as_problems():
            check_external_ref_free(session, work.rights_holder, changes["external_ref"], exclude=work.id)
    for field, value in changes.items():
        setattr(work, field, value)
    record(session, action="work.update", key=key, target=work_id, detail=changes)
    session.commit()
    return work_public(work)


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
    storage.delete_prefix(source_thumbnails_prefix(work_id))
    storage.delete_prefix(f"sources/{work_id}")  # the emptied per-work folder too
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _get_or_404(session, key: CachedKey, work_id: uuid.UUID) -> Work:
    # Another rights holder's work answers exactly like a missing one: its existence is not revealed.
    work = crud.get_work(session, work_id=work_id)
    if work is None or not owns_rights_holder(key, work.rights_holder):
        raise Problem(404, f"no work with id {work_id}", title="Unknown work")
    return work

"""Evidence beside a result: thumbnails of a match's source image and of the query.

Who sees which source thumbnail: admins every one; registrars their own rights holder's; reviewers any
image some job returned as a match; attributors only images returned as a match in their own jobs (no
browsing of catalogues). Anything else answers 404, exactly like a missing image."""
import hashlib
import uuid

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from app.api.deps import SessionDep, StorageDep
from app.problems import Problem
from app.security import CurrentKey, owns_rights_holder
from common.db import crud, review
from common.db.models import ApiKey, Scope, SourceImage
from common.storage import Storage
from common.thumbnails import THUMBNAIL_SIDE, make_thumbnail, query_thumbnail_key, source_thumbnail_key

router = APIRouter(tags=["evidence"])
_JPEG = {200: {"content": {"image/jpeg": {}}, "description": f"a JPEG, longer side <= {THUMBNAIL_SIDE} px"}}
# Image ids are database BIGINTs: a larger number is a client error, never a driver overflow (500).
ImageId = Annotated[int, Path(ge=1, le=2**63 - 1)]
# Private: a thumbnail is access-controlled, so shared caches must not keep it.
_CACHE = "private, max-age=86400"


@router.get("/sources/{work_id}/images/{image_id}/thumbnail", response_class=Response, responses=_JPEG)
def read_source_thumbnail(key: CurrentKey, request: Request, session: SessionDep, storage: StorageDep,
                          work_id: uuid.UUID, image_id: ImageId) -> Response:
    """A small JPEG of a registered image, for comparing a match with its query."""
    image = review.get_live_image(session, work_id=work_id, image_id=image_id)
    if image is None or not _may_see(session, key, image):
        raise Problem(404, f"no image {image_id} in work {work_id} that this key may see", title="Unknown image")
    thumbnail_key = source_thumbnail_key(work_id, image_id)
    if not storage.exists(thumbnail_key):
        storage.put(thumbnail_key, make_thumbnail(storage.get(image.storage_key)))
    return _jpeg(request, storage, thumbnail_key, etag_seed=image.content_sha256)


def _may_see(session, key: ApiKey, image: SourceImage) -> bool:
    if key.scope in (Scope.admin, Scope.registrar):
        return owns_rights_holder(key, image.work.rights_holder)
    if key.scope == Scope.reviewer:
        return review.image_matched_in_any_job(session, image_id=image.id)
    return review.image_matched_for_client(session, client_key_id=key.id, image_id=image.id)


@router.get("/attribute/{job_id}/thumbnail", response_class=Response, responses=_JPEG)
def read_query_thumbnail(key: CurrentKey, request: Request, session: SessionDep, storage: StorageDep,
                         job_id: uuid.UUID) -> Response:
    """A small JPEG of the job's query image, made by the worker when it runs the job and kept after the
    image itself is deleted (404 before then)."""
    job = crud.get_job(session, job_id=job_id)
    may_read = job is not None and (key.scope in (Scope.admin, Scope.reviewer) or job.client_key_id == key.id)
    thumbnail_key = query_thumbnail_key(job_id)
    if not may_read or not storage.exists(thumbnail_key):
        raise Problem(404, f"no query thumbnail for job {job_id}", title="Unknown job")
    return _jpeg(request, storage, thumbnail_key, etag_seed=job.query_sha256)


def _jpeg(request: Request, storage: Storage, thumbnail_key: str, etag_seed: str) -> Response:
    etag = '"' + hashlib.sha256(f"{etag_seed}:{THUMBNAIL_SIDE}".encode()).hexdigest()[:32] + '"'
    headers = {"Cache-Control": _CACHE, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(storage.get(thumbnail_key), media_type="image/jpeg", headers=headers)

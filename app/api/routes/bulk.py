"""Bulk registration: a manifest plus image files in one multipart request, answered item by item, and
the import's progress until every created image is searchable (`GET /sources/bulk/{id}`).
The registration logic lives in common.bulk and common.registration, the tracking in common.imports;
this module reads the request, checks the callback URL and enqueues embedding."""
import logging
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from app.api.deps import QueuesDep, SessionDep, SettingsDep, StorageDep, refuse_when_full
from app.api.routes.webhooks import checked_callback_url
from app.problems import Problem
from app.public_urls import public_url
from app.schemas import DeliveryPublic
from app.security import RegistrarKey
from app.uploads import limits_from
from common import imports
from common.bulk import BulkRejected, Limits, Manifest, parse_manifest, register_items
from common.db.models import ImportStatus, Scope
from common.db.session import new_session
from common.registration import Registrant
from common.jobs import enqueue_embed_batches
from common.settings import Settings

router = APIRouter(prefix="/sources", tags=["sources"])
log = logging.getLogger(__name__)

_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["manifest", "files"],
    "properties": {
        "manifest": {"type": "string", "description": 'JSON: {"items": [{"item_id", "title", "external_ref"?, '
                     '"licence"?, "rights_holder"? (admins), "files": [filename, ...]}], "callback_url"?}: '
                     "callback_url is POSTed one signed registration.finished event once every created image is "
                     "embedded or failed"},
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "the images; each part's filename is what the manifest names"}}}}}}}


class BulkItemReport(BaseModel):
    item_id: str | None
    status: str
    work_id: uuid.UUID | None = None
    reason: str | None = None
    detail: str | None = None


class BulkReport(BaseModel):
    items: list[BulkItemReport]
    summary: dict[str, int]
    import_id: uuid.UUID = Field(description="the import's id: GET /v1/sources/bulk/{import_id} shows its progress")
    status_url: str


class ImportImages(BaseModel):
    total: int = Field(description="images of the works this import created")
    pending: int
    embedded: int = Field(description="searchable")
    failed: int
    deleted: int = Field(description="of works deleted since (never embedded)")


class BulkImportPublic(BaseModel):
    id: uuid.UUID
    status: ImportStatus = Field(description="registering (request running), embedding, or finished (every "
                                             "created image embedded or failed)")
    created_at: datetime
    finished_at: datetime | None = None
    items: dict[str, int] = Field(description="created, duplicate and refused items")
    images: ImportImages
    failed: list[dict] = Field(description=f"failed images (at most {imports.MAX_FAILED_LISTED}): "
                                           "image_id, work_id, item_id, error")
    callback_url: str | None = None
    deliveries: list[DeliveryPublic] | None = Field(default=None, description="webhook deliveries, with callback_url")


@router.post("/bulk", response_model=BulkReport, openapi_extra=_BODY, response_model_exclude_none=True)
async def create_sources_bulk(key: RegistrarKey, request: Request, settings: SettingsDep, storage: StorageDep,
                              queues: QueuesDep) -> Any:
    """Register many works; 200 with one report per item (created, duplicate or refused with a reason) and
    the import's id, whose progress (and webhook delivery) `GET /v1/sources/bulk/{import_id}` shows."""
    await run_in_threadpool(refuse_when_full, queues.embed, settings.max_queued_embed_jobs,
                            settings.queue_full_retry_after_s, "embedding")
    form = await _read_form(request, settings)
    try:
        manifest = parse_manifest(await _manifest_bytes(form, settings), settings.bulk_max_items)
        files = _files_by_name(form)
    except BulkRejected as exc:
        raise Problem(exc.status, exc.detail, title="Invalid bulk request", reason=exc.reason) from exc
    report = await run_in_threadpool(_register, key, manifest, files, settings, storage, queues)
    report["status_url"] = public_url(request, request.app.url_path_for("read_source_import",
                                                                        import_id=report["import_id"]))
    return report


@router.get("/bulk/{import_id}", response_model=BulkImportPublic)
def read_source_import(key: RegistrarKey, session: SessionDep, import_id: uuid.UUID) -> BulkImportPublic:
    """A bulk import's progress: its item counts, its images by state, and its webhook delivery."""
    imported = imports.get_readable(session, import_id, scope=key.scope, rights_holder=key.rights_holder,
                                    key_id=key.id)
    if imported is None:  # another tenant's import answers exactly like a missing one
        raise Problem(404, f"no bulk import with id {import_id}", title="Unknown import")
    return BulkImportPublic(
        id=imported.id, status=imported.status, created_at=imported.created_at, finished_at=imported.finished_at,
        items=imports.items(imported), images=ImportImages(**imports.progress(session, imported.id)),
        failed=imports.failed_images(session, imported.id), callback_url=imported.callback_url,
        deliveries=[DeliveryPublic.model_validate(d) for d in imported.deliveries] if imported.callback_url else None)


async def _read_form(request: Request, settings: Settings) -> FormData:
    try:
        return await request.form(max_files=settings.bulk_max_files, max_fields=8,
                                  max_part_size=settings.bulk_max_manifest_bytes)
    except HTTPException as exc:  # starlette's multipart limits, made into clear problems
        detail = str(exc.detail)
        if detail.startswith("Too many files"):
            raise Problem(413, f"more than {settings.bulk_max_files} files in one request", title="Too many files",
                          reason="too_many_files") from exc
        if "maximum size" in detail:
            raise Problem(413, f"the manifest exceeds {settings.bulk_max_manifest_bytes} bytes",
                          title="Manifest too large", reason="manifest_too_large") from exc
        raise Problem(422, f"the body is not valid multipart/form-data: {detail}", title="Invalid bulk request",
                      reason="invalid_multipart") from exc


async def _manifest_bytes(form: FormData, settings: Settings) -> bytes:
    """The manifest may come as a plain field or as a file part (`-F manifest=@manifest.json`)."""
    manifest = form.get("manifest")
    if manifest is None:
        raise BulkRejected(422, "invalid_manifest", "the request has no `manifest` part")
    if isinstance(manifest, str):
        return manifest.encode()
    data = await manifest.read(settings.bulk_max_manifest_bytes + 1)
    if len(data) > settings.bulk_max_manifest_bytes:
        raise BulkRejected(413, "manifest_too_large", f"the manifest exceeds {settings.bulk_max_manifest_bytes} bytes")
    return data


def _files_by_name(form: FormData) -> dict[str, UploadFile]:
    files: dict[str, UploadFile] = {}
    for part in form.getlist("files"):
        if not isinstance(part, UploadFile) or not part.filename:
            raise BulkRejected(422, "invalid_file_part", "every `files` part needs a filename")
        if part.filename in files:
            raise BulkRejected(422, "duplicate_filename", f"two file parts are named {part.filename!r}")
        files[part.filename] = part
    return files


def _register(key, manifest: Manifest, files: dict[str, UploadFile], settings: Settings, storage, queues) -> dict:
    """Blocking: runs in the thread pool. Embedding is enqueued as works commit, a job per
    `embed_job_images` images, so workers start while the request is still being read. The import
    row is opened before the first item and closed after the last (common.imports)."""
    batcher = _EmbedBatcher(queues.embed, settings.embed_job_images)
    limits = Limits(settings.bulk_max_items, settings.max_images_per_work, limits_from(settings),
                    unique_external_ref=settings.unique_external_ref)
    with new_session() as session:
        callback_url = checked_callback_url(session, key.id, manifest.callback_url, settings)
        import_id = imports.open_import(session, key_id=key.id, callback_url=callback_url,
                                        rights_holder=key.rights_holder if key.scope != Scope.admin else None)
        report = register_items(session, storage, registrant=Registrant(key.scope, key.rights_holder, key),
                                entries=manifest.entries, import_id=import_id, limits=limits, on_created=batcher.add,
                                read_file=lambda name: _read_capped(files.get(name), settings.max_upload_bytes))
        batcher.flush()  # before closing: an import with nothing to embed finishes at once, else the workers finish it
        imports.close_import(session, import_id, report.summary())
    return {**report.public(), "import_id": import_id}


def _read_capped(upload: UploadFile | None, limit: int) -> bytes | None:
    """At most limit + 1 bytes (check_image then refuses it as too large); a file two items name is
    read twice."""
    if upload is None:
        return None
    upload.file.seek(0)
    return upload.file.read(limit + 1)


class _EmbedBatcher:
    """Collects created images' ids; n images make ceil(n / per_job) embedding jobs."""

    def __init__(self, queue, per_job: int):
        self.queue, self.per_job, self.ids = queue, per_job, []

    def add(self, image_ids: list[int]) -> None:
        self.ids.extend(image_ids)
        if len(self.ids) >= self.per_job:
            full = len(self.ids) - len(self.ids) % self.per_job
            self._enqueue(self.ids[:full])
            self.ids = self.ids[full:]

    def flush(self) -> None:
        self._enqueue(self.ids)
        self.ids = []

    def _enqueue(self, ids: list[int]) -> None:
        # The works are committed; if Redis is down now, the recovery pass embeds them later.
        try:
            enqueue_embed_batches(self.queue, ids, self.per_job)
        except RedisError:
            log.warning("queue unavailable; %d images stay pending until a worker recovers them", len(ids))

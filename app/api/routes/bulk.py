"""Bulk registration: a manifest plus image files in one multipart request, answered item by item.
The registration logic lives in common.bulk; this module reads the request and enqueues embedding."""
import logging
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from app.api.deps import QueuesDep, SettingsDep, StorageDep, refuse_when_full
from app.problems import Problem
from app.security import RegistrarKey
from app.uploads import limits_from
from common.bulk import BulkRejected, Caller, Limits, parse_manifest, register_items
from common.db.session import new_session
from common.jobs import enqueue_embed_batches
from common.settings import Settings

router = APIRouter(prefix="/sources", tags=["sources"])
log = logging.getLogger(__name__)

_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["manifest", "files"],
    "properties": {
        "manifest": {"type": "string", "description": 'JSON: {"items": [{"item_id", "title", "external_ref"?, '
                     '"licence"?, "rights_holder"? (admins), "files": [filename, ...]}]}'},
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


@router.post("/bulk", response_model=BulkReport, openapi_extra=_BODY, response_model_exclude_none=True)
async def create_sources_bulk(key: RegistrarKey, request: Request, settings: SettingsDep, storage: StorageDep,
                              queues: QueuesDep) -> Any:
    """Register many works; 200 with one report per item (created, duplicate or refused with a reason)."""
    await run_in_threadpool(refuse_when_full, queues.embed, settings.max_queued_embed_jobs,
                            settings.queue_full_retry_after_s, "embedding")
    form = await _read_form(request, settings)
    try:
        entries = parse_manifest(await _manifest_bytes(form, settings), settings.bulk_max_items)
        files = _files_by_name(form)
    except BulkRejected as exc:
        raise Problem(exc.status, exc.detail, title="Invalid bulk request", reason=exc.reason) from exc
    return await run_in_threadpool(_register, key, entries, files, settings, storage, queues)


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


def _register(key, entries: list, files: dict[str, UploadFile], settings: Settings, storage, queues) -> dict:
    """Blocking: runs in the thread pool. Embedding is enqueued as works commit, a job per
    `embed_job_images` images, so workers start while the request is still being read."""
    batcher = _EmbedBatcher(queues.embed, settings.embed_job_images)
    limits = Limits(settings.bulk_max_items, settings.max_images_per_work, limits_from(settings))
    with new_session() as session:
        report = register_items(session, storage, caller=Caller(key.scope, key.rights_holder, key), entries=entries,
                                read_file=lambda name: _read_capped(files.get(name), settings.max_upload_bytes),
                                limits=limits, on_created=batcher.add)
    batcher.flush()
    return report.public()


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

"""Bulk registration (POST /sources/bulk): many works in one request, each item reported on its own.

An item is a work: an `item_id` chosen by the client, a title, optional metadata and the names of its
image files. Each item is validated, checked and committed alone, so a bad item never sinks the others
and a request cut off half-way keeps what it committed. Re-sending an item is idempotent: an item whose
(rights holder, item_id) already names a live work, or whose images all belong to one live work of
that rights holder, answers `duplicate` with that work's id, so a re-run after a crash resumes.
No FastAPI here: the route (app/api/routes/bulk.py) reads the request and enqueues the embedding."""
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.db import crud
from common.db.models import ImageState, Scope, SourceImage, Work
from common.images import CheckedImage, ImageLimits, ImageRejected, check_image
from common.audit import record
from common.storage import Storage


class BulkRejected(ValueError):
    """The request as a whole cannot be processed (no item was looked at)."""

    def __init__(self, status: int, reason: str, detail: str):
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


class BulkItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=300)
    external_ref: str | None = Field(default=None, max_length=500)
    licence: str | None = Field(default=None, max_length=200)
    rights_holder: str | None = Field(default=None, min_length=1, max_length=200)
    files: list[str] = Field(min_length=1)


@dataclass(frozen=True)
class Caller:
    """Who registers: an admin names each item's rights holder; a registrar registers for its own."""
    scope: Scope
    rights_holder: str | None
    key: object | None = None  # the caller's key, named in the audit log


@dataclass(frozen=True)
class Limits:
    max_items: int
    max_images_per_item: int
    image: ImageLimits


@dataclass
class ItemResult:
    item_id: str | None
    status: str  # created | duplicate | refused
    work_id: uuid.UUID | None = None
    reason: str | None = None
    detail: str | None = None

    def public(self) -> dict:
        return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in vars(self).items() if v is not None
                or k in ("item_id", "status")}


class Refused(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class Report:
    items: list[ItemResult] = field(default_factory=list)

    def public(self) -> dict:
        summary = {status: sum(r.status == status for r in self.items) for status in ("created", "duplicate", "refused")}
        return {"items": [r.public() for r in self.items], "summary": summary}


def parse_manifest(raw: bytes, max_items: int) -> list:
    """The manifest's raw item entries (each validated later, on its own)."""
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BulkRejected(422, "invalid_manifest", f"the manifest is not valid JSON: {exc}") from exc
    items = manifest.get("items") if isinstance(manifest, dict) else None
    if not isinstance(items, list) or not items:
        raise BulkRejected(422, "invalid_manifest", 'the manifest must be an object {"items": [...]} with at '
                           "least one item")
    if len(items) > max_items:
        raise BulkRejected(413, "too_many_items", f"{len(items)} items in one request; the limit is {max_items}")
    return items


def register_items(session: Session, storage: Storage, *, caller: Caller, entries: list,
                   read_file: Callable[[str], bytes | None], limits: Limits,
                   on_created: Callable[[list[int]], None] = lambda ids: None) -> Report:
    """Register each entry; `read_file(name)` gives a named file's bytes (None if absent);
    `on_created(image_ids)` is called after each created work commits (to enqueue its embedding)."""
    report, seen = Report(), set()
    for entry in entries:
        result = _register_one(session, storage, caller, entry, read_file, limits, seen)
        report.items.append(result)
        if result.status == "created":
            on_created(_image_ids(session, result.work_id))
    return report


def _register_one(session, storage, caller, entry, read_file, limits, seen: set) -> ItemResult:
    item_id = entry.get("item_id") if isinstance(entry, dict) and isinstance(entry.get("item_id"), str) else None
    try:
        item = _validate(entry, limits, seen)
        rights_holder = _rights_holder_for(caller, item.rights_holder)
        if (work_id := _work_of_item(session, rights_holder, item.item_id)) is not None:
            return ItemResult(item_id, "duplicate", work_id)
        images = _checked_images(item, read_file, limits.image)
        if (work_id := _work_holding_all(session, rights_holder, images)) is not None:
            return ItemResult(item_id, "duplicate", work_id)
        return ItemResult(item_id, "created", _create(session, storage, item, rights_holder, images, caller))
    except Refused as exc:
        session.rollback()
        return ItemResult(item_id, "refused", reason=exc.reason, detail=exc.detail)
    except IntegrityError:  # a concurrent request created the same item between our check and commit
        session.rollback()
        work_id = _work_of_item(session, rights_holder, item.item_id)
        return (ItemResult(item_id, "duplicate", work_id) if work_id else
                ItemResult(item_id, "refused", reason="conflict", detail="a concurrent request changed this item"))


def _validate(entry, limits: Limits, seen: set) -> BulkItem:
    try:
        item = BulkItem.model_validate(entry)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'item'}: {e['msg']}" for e in exc.errors())
        raise Refused("invalid_item", detail) from exc
    if item.item_id in seen:
        raise Refused("duplicate_item_id", f"item_id {item.item_id!r} appears more than once in this manifest")
    seen.add(item.item_id)
    if len(item.files) > limits.max_images_per_item:
        raise Refused("too_many_images", f"{len(item.files)} files; a work may have at most "
                      f"{limits.max_images_per_item} images")
    return item


def _rights_holder_for(caller: Caller, requested: str | None) -> str:
    if caller.scope == Scope.admin:
        if requested is None:
            raise Refused("rights_holder_required", "an admin key must name each item's rights_holder")
        return requested
    if requested is not None and requested != caller.rights_holder:
        raise Refused("forbidden", f"this key registers works for {caller.rights_holder!r} only")
    return caller.rights_holder


def _work_of_item(session: Session, rights_holder: str, item_id: str) -> uuid.UUID | None:
    return session.scalar(select(Work.id).where(Work.rights_holder == rights_holder, Work.import_item_id == item_id,
                                                Work.deleted_at.is_(None)))


def _checked_images(item: BulkItem, read_file, limits: ImageLimits) -> dict[str, CheckedImage]:
    checked = {}
    for name in item.files:
        data = read_file(name)
        if data is None:
            raise Refused("missing_file", f"no file part named {name!r} in this request")
        try:
            image = check_image(data, limits)
        except ImageRejected as exc:
            raise Refused(exc.reason, f"{name}: {exc.detail}") from exc
        checked[image.sha256] = image
    return checked


def _work_holding_all(session: Session, rights_holder: str, images: dict[str, CheckedImage]) -> uuid.UUID | None:
    """Same rule as POST /sources: the one live work already holding every image is this item; images
    spread over other works are refused rather than registered twice."""
    existing = crud.find_live_images_by_hash(session, rights_holder=rights_holder, hashes=images)
    if not existing:
        return None
    work_ids = {image.work_id for image in existing.values()}
    if len(existing) == len(images) and len(work_ids) == 1:
        return work_ids.pop()
    raise Refused("duplicate_images", "some of these images are already registered for this rights holder "
                  f"in other works: {', '.join(sorted(str(w) for w in work_ids))}")


def _create(session: Session, storage: Storage, item: BulkItem, rights_holder: str,
            images: dict[str, CheckedImage], caller: Caller) -> uuid.UUID:
    work_id = uuid.uuid4()
    try:
        session.add(Work(id=work_id, title=item.title, rights_holder=rights_holder, external_ref=item.external_ref,
                         licence=item.licence, import_item_id=item.item_id,
                         images=[store_source_image(storage, work_id, image) for image in images.values()]))
        record(session, action="work.register", key=caller.key, target=work_id,
               detail={"title": item.title, "rights_holder": rights_holder, "images": len(images),
                       "bulk_item_id": item.item_id})
        session.commit()
    except Exception:
        storage.delete_prefix(f"sources/{work_id}")  # nothing refers to these files
        raise
    return work_id


def _image_ids(session: Session, work_id: uuid.UUID) -> list[int]:
    return list(session.scalars(select(SourceImage.id).where(SourceImage.work_id == work_id)))


def store_source_image(storage: Storage, work_id: uuid.UUID, image: CheckedImage) -> SourceImage:
    """Write the file under its work (deleting a work never removes another's file) and return its row."""
    key = f"sources/{work_id}/{image.sha256}.{image.extension}"
    storage.put(key, image.data)
    return SourceImage(content_sha256=image.sha256, storage_key=key, media_type=image.media_type,
                       byte_size=len(image.data), width=image.width, height=image.height,
                       state=ImageState.pending)


"""Bulk registration (POST /sources/bulk): many works in one request, each item reported on its own.

An item is a work: an `item_id` chosen by the client, a title, optional metadata and the names of its
image files. Each item is validated, checked and committed alone, so a bad item never sinks the others
and a request cut off half-way keeps what it committed. The registration rules are the single path's
(common.registration): an item whose (rights holder, item_id) already names a live work, whose images
all belong to one live work of that rights holder, or (with ATTRIB_UNIQUE_EXTERNAL_REF) whose
external_ref names a live work, answers `duplicate` with that work's id, so a re-run resumes.
No FastAPI here: the route (app/api/routes/bulk.py) reads the request and enqueues the embedding."""
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from common.images import CheckedImage, ImageChecker, ImageLimits, ImageRejected
from common.registration import (
    Metadata, Registrant, RegistrationRefused, register, rights_holder_for, works_of_import_items,
)
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
class Limits:
    max_items: int
    max_images_per_item: int
    image: ImageLimits
    unique_external_ref: bool = False  # ATTRIB_UNIQUE_EXTERNAL_REF, as on the single path


@dataclass
class ItemResult:
    item_id: str | None
    status: str  # created | duplicate | refused
    work_id: uuid.UUID | None = None
    reason: str | None = None
    detail: str | None = None
    image_ids: tuple[int, ...] = ()  # a created work's images (to enqueue), not reported

    def public(self) -> dict:
        return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in vars(self).items()
                if k != "image_ids" and (v is not None or k in ("item_id", "status"))}


class Refused(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class Report:
    items: list[ItemResult] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.items) for status in ("created", "duplicate", "refused")}

    def public(self) -> dict:
        return {"items": [r.public() for r in self.items], "summary": self.summary()}


@dataclass(frozen=True)
class Manifest:
    entries: list
    callback_url: str | None = None


def parse_manifest(raw: bytes, max_items: int) -> Manifest:
    """The manifest's raw item entries (each validated later, on its own) and its `callback_url`."""
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
    callback_url = manifest.get("callback_url")
    if callback_url is not None and (not isinstance(callback_url, str) or not 0 < len(callback_url) <= 2000):
        raise BulkRejected(422, "invalid_manifest", "callback_url must be a URL of at most 2000 characters")
    return Manifest(items, callback_url)


def register_items(session: Session, storage: Storage, *, registrant: Registrant, entries: list,
                   read_file: Callable[[str], bytes | None], limits: Limits, import_id: uuid.UUID | None = None,
                   on_created: Callable[[list[int]], None] = lambda ids: None) -> Report:
    """Register each entry; `read_file(name)` gives a named file's bytes (None if absent);
    `on_created(image_ids)` is called after each created work commits (to enqueue its embedding).
    Created works name `import_id` (common.imports follows them until embedded)."""
    report, seen = Report(), set()
    known = _registered_items(session, registrant, entries)
    # One sandboxed child checks every image of the request in turn (common.images.ImageChecker), with
    # the same answers as a child per image, which would cost more CPU than the decoding itself.
    with ImageChecker(limits.image) as checker:
        for entry in entries:
            result = _register_one(session, storage, registrant, entry, read_file, limits, seen, import_id, checker,
                                   known)
            report.items.append(result)
            if result.status == "created":
                on_created(list(result.image_ids))
    return report


def _registered_items(session: Session, registrant: Registrant, entries: list) -> dict[tuple[str, str], uuid.UUID]:
    """Rule 2 for the whole manifest before any item: {(rights holder, item_id): live work}. One query
    per rights holder named (per 500 items), so a re-sent manifest costs no query per item. Entries
    that are not valid items are left to `_register_one` to refuse."""
    wanted: dict[str, list[str]] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("item_id"), str):
            try:
                holder = rights_holder_for(registrant, entry.get("rights_holder"))
            except RegistrationRefused:
                continue
            if isinstance(holder, str):
                wanted.setdefault(holder, []).append(entry["item_id"])
    return {(holder, item_id): work_id for holder, item_ids in wanted.items()
            for item_id, work_id in works_of_import_items(session, holder, item_ids).items()}


def _register_one(session, storage, registrant, entry, read_file, limits: Limits, seen: set,
                  import_id, checker: ImageChecker, known: dict[tuple[str, str], uuid.UUID]) -> ItemResult:
    item_id = entry.get("item_id") if isinstance(entry, dict) and isinstance(entry.get("item_id"), str) else None
    try:
        item = _validate(entry, limits, seen)
        rights_holder = rights_holder_for(registrant, item.rights_holder)
        # Before reading the files: a re-sent item costs nothing more (rule 2 was applied to the manifest).
        if (work_id := known.get((rights_holder, item.item_id))) is not None:
            return ItemResult(item_id, "duplicate", work_id)
        meta = Metadata(item.title, item.external_ref, item.licence, import_item_id=item.item_id, import_id=import_id)
        outcome = register(session, storage, registrant, rights_holder, _checked_images(item, read_file, checker),
                           meta, unique_external_ref=limits.unique_external_ref, import_item_checked=True)
    except (Refused, RegistrationRefused) as exc:
        session.rollback()
        return ItemResult(item_id, "refused", reason=exc.reason, detail=exc.detail)
    if outcome.created:
        return ItemResult(item_id, "created", outcome.work_id, image_ids=outcome.image_ids)
    if outcome.why == "external_ref":  # say why: the images may differ from the registered work's
        return ItemResult(item_id, "duplicate", outcome.work_id, reason="external_ref",
                          detail=f"external_ref {item.external_ref!r} already names work {outcome.work_id}")
    return ItemResult(item_id, "duplicate", outcome.work_id)


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


def _checked_images(item: BulkItem, read_file, checker: ImageChecker) -> dict[str, CheckedImage]:
    checked = {}
    for name in item.files:
        data = read_file(name)
        if data is None:
            raise Refused("missing_file", f"no file part named {name!r} in this request")
        try:
            image = checker.check(data)
        except ImageRejected as exc:
            raise Refused(exc.reason, f"{name}: {exc.detail}") from exc
        checked[image.sha256] = image
    return checked

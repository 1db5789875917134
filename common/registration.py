"""The rules of registering a work, in one place for both paths: `POST /sources` (one work) and
`POST /sources/bulk` (many, common.bulk). No FastAPI here: a refusal is a `RegistrationRefused` that
each path presents its own way (a problem response, or a refused item in the bulk report).

The rules, in the order they are applied:
1. Registrars register for their own rights holder only; admins must name one.
2. A bulk item whose (rights holder, item_id) already names a live work is that work (a re-sent item).
3. Identical bytes live once per rights holder among live works: if one live work already holds every
   image, the request *is* that work; images spread over other works are refused (409).
4. With ATTRIB_UNIQUE_EXTERNAL_REF, a rights holder's external_ref names at most one live work: the
   work holding it is returned with `why="external_ref"` (the single path answers 409 naming it, the
   bulk path reports the item duplicate), so a catalogue import keyed by external_ref can be re-run.
5. Otherwise the work is created: files stored under the work's own folder, rows and audit entry
   committed together. A concurrent registration that wins a uniqueness index between the checks and
   the commit makes this one re-apply rules 2-3 (the loser answers with the winner's work)."""
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.audit import record
from common.db import crud, listing
from common.db.models import ImageState, Scope, SourceImage, Work
from common.images import CheckedImage
from common.storage import Storage


class RegistrationRefused(Exception):
    """A rule refuses the registration. `extra` carries what the client needs (`duplicates`, `work_id`)."""

    def __init__(self, status: int, reason: str, detail: str, title: str, type_: str | None = None, **extra):
        super().__init__(detail)
        self.status, self.reason, self.detail, self.title, self.type = status, reason, detail, title, type_
        self.extra = extra


@dataclass(frozen=True)
class Registrant:
    """Who registers: its scope, its own rights holder (registrars) and its key (named in the audit log)."""
    scope: Scope
    rights_holder: str | None
    key: object | None = None


@dataclass(frozen=True)
class Metadata:
    title: str
    external_ref: str | None = None
    licence: str | None = None
    import_item_id: str | None = None        # the bulk item that creates the work (rule 2)
    import_id: uuid.UUID | None = None       # the bulk import it belongs to (common.imports)


@dataclass(frozen=True)
class Registered:
    work_id: uuid.UUID
    created: bool
    why: str | None = None  # an existing work: "import_item", "images" or "external_ref"
    image_ids: tuple[int, ...] = ()  # a created work's images, in order (read before the commit: no query)


def rights_holder_for(registrant: Registrant, requested: str | None) -> str:
    """Rule 1."""
    if registrant.scope == Scope.admin:
        if requested is None:
            raise RegistrationRefused(422, "rights_holder_required", "an admin key must name the rights_holder",
                                      "Invalid request parameters")
        return requested
    if requested is not None and requested != registrant.rights_holder:
        raise RegistrationRefused(403, "forbidden", f"this key registers works for {registrant.rights_holder!r} only",
                                  "Forbidden")
    return registrant.rights_holder


def work_of_import_item(session: Session, rights_holder: str, item_id: str) -> uuid.UUID | None:
    """Rule 2 for one item."""
    return session.scalar(select(Work.id).where(Work.rights_holder == rights_holder, Work.import_item_id == item_id,
                                                Work.deleted_at.is_(None)))


def works_of_import_items(session: Session, rights_holder: str, item_ids: list[str],
                          batch: int = 500) -> dict[str, uuid.UUID]:
    """Rule 2 for a whole manifest, one query per `batch` item ids: bulk applies it before reading any
    file, so a re-sent manifest (an import resumed after a crash) costs no query per item."""
    found: dict[str, uuid.UUID] = {}
    for start in range(0, len(item_ids), batch):
        found.update(session.execute(select(Work.import_item_id, Work.id).where(
            Work.rights_holder == rights_holder, Work.import_item_id.in_(item_ids[start:start + batch]),
            Work.deleted_at.is_(None))).tuples().all())
    return found


def register(session: Session, storage: Storage, registrant: Registrant, rights_holder: str,
             images: dict[str, CheckedImage], meta: Metadata, *, unique_external_ref: bool,
             import_item_checked: bool = False) -> Registered:
    """Rules 2-5 for checked images (keyed by content hash); commits a created work.
    `import_item_checked`: the caller applied rule 2 already (bulk, for the whole manifest at once). A
    concurrent registration of the same item since then is still answered by rule 2 first: before any
    later rule answers (images found, a reference held), rule 2 is applied again; and without those, the
    item loses on the unique index and is answered below."""
    if (existing := _existing(session, rights_holder, images, meta, skip_item=import_item_checked)) is not None:
        return existing
    if unique_external_ref and meta.external_ref is not None:
        holder = external_ref_holder(session, rights_holder, meta.external_ref)  # locks the reference to commit
        if holder is not None:
            return _item_registered_since(session, rights_holder, meta, import_item_checked) or \
                Registered(holder, False, "external_ref")
    created = _create(session, storage, registrant, rights_holder, images, meta)
    if created is not None:
        return Registered(created[0], True, image_ids=created[1])
    # A concurrent registration committed the same bytes or item first: answer with its work.
    if (existing := _existing(session, rights_holder, images, meta)) is not None:
        return existing
    raise RegistrationRefused(409, "conflict", "a concurrent registration changed these works; retry", "Conflict")


def _existing(session: Session, rights_holder: str, images: dict[str, CheckedImage],
              meta: Metadata, skip_item: bool = False) -> Registered | None:
    if meta.import_item_id and not skip_item and (
            work_id := work_of_import_item(session, rights_holder, meta.import_item_id)):
        return Registered(work_id, False, "import_item")
    found = crud.find_live_images_by_hash(session, rights_holder=rights_holder, hashes=images)
    if not found:
        return None
    if (item := _item_registered_since(session, rights_holder, meta, skip_item)) is not None:
        return item
    work_ids = {image.work_id for image in found.values()}
    if len(found) == len(images) and len(work_ids) == 1:
        return Registered(work_ids.pop(), False, "images")
    raise RegistrationRefused(409, "duplicate_images", "some of these images are already registered for this "
                              f"rights holder in other works: {', '.join(sorted(str(w) for w in work_ids))}",
                              "Duplicate images", "/problems/duplicate-images",
                              duplicates={h: str(i.work_id) for h, i in found.items()})


def _item_registered_since(session: Session, rights_holder: str, meta: Metadata, checked: bool) -> Registered | None:
    """Rule 2 again, only where the caller had applied it earlier and a later rule is about to answer:
    one query, and only then."""
    if not (checked and meta.import_item_id):
        return None
    work_id = work_of_import_item(session, rights_holder, meta.import_item_id)
    return Registered(work_id, False, "import_item") if work_id is not None else None


def external_ref_holder(session: Session, rights_holder: str, external_ref: str,
                        exclude: uuid.UUID | None = None) -> uuid.UUID | None:
    """The live work holding this reference (rule 4). Locks the reference until commit, so two writers
    of one reference take turns (PostgreSQL advisory lock; SQLite serialises writers itself)."""
    listing.lock_external_ref(session, rights_holder=rights_holder, external_ref=external_ref)
    holder = listing.find_live_work_by_external_ref(session, rights_holder=rights_holder, external_ref=external_ref,
                                                    exclude=exclude)
    return holder.id if holder is not None else None


def check_external_ref_free(session: Session, rights_holder: str, external_ref: str,
                            exclude: uuid.UUID | None = None) -> None:
    """Rule 4 for a change of an existing work (PATCH): a used reference is refused, naming its work."""
    holder = external_ref_holder(session, rights_holder, external_ref, exclude)
    if holder is not None:
        raise external_ref_used(external_ref, holder)


def external_ref_used(external_ref: str, holder: uuid.UUID) -> RegistrationRefused:
    """The single path's answer to rule 4: one request means one new work, so a used reference is a
    conflict naming the work to PATCH (the bulk path reports the item duplicate instead)."""
    return RegistrationRefused(409, "duplicate_external_ref", f"external_ref {external_ref!r} already belongs to "
                               f"work {holder}; change that work with PATCH instead", "Duplicate external_ref",
                               "/problems/duplicate-external-ref", work_id=str(holder))


def _create(session: Session, storage: Storage, registrant: Registrant, rights_holder: str,
            images: dict[str, CheckedImage], meta: Metadata) -> tuple[uuid.UUID, tuple[int, ...]] | None:
    """Rule 5: (work id, image ids), or None if a uniqueness index refused the rows (a concurrent
    registration won). Files live under the work's own id, so deleting a work never removes another's
    file; they are kept only when the rows commit."""
    work_id = uuid.uuid4()
    try:
        work = crud.create_work(session, work_id=work_id, title=meta.title, rights_holder=rights_holder,
                                external_ref=meta.external_ref, licence=meta.licence,
                                import_item_id=meta.import_item_id, import_id=meta.import_id,
                                images=[store_source_image(storage, work_id, image) for image in images.values()])
        image_ids = tuple(sorted(image.id for image in work.images))  # flushed: ids known, no query
        detail = {"title": meta.title, "rights_holder": rights_holder, "images": len(images)}
        record(session, action="work.register", key=registrant.key, target=work_id,
               detail=detail | ({"bulk_item_id": meta.import_item_id} if meta.import_item_id else {}))
        session.commit()
        return work_id, image_ids
    except BaseException as exc:
        session.rollback()
        storage.delete_prefix(f"sources/{work_id}")
        if isinstance(exc, IntegrityError):
            return None
        raise


def store_source_image(storage: Storage, work_id: uuid.UUID, image: CheckedImage) -> SourceImage:
    """Write the file under its work and return its (pending) row."""
    key = f"sources/{work_id}/{image.sha256}.{image.extension}"
    storage.put(key, image.data)
    return SourceImage(content_sha256=image.sha256, storage_key=key, media_type=image.media_type,
                       byte_size=len(image.data), width=image.width, height=image.height,
                       state=ImageState.pending)


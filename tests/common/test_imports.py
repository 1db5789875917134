"""common.imports: a bulk import finishes exactly once, only after the request closed it and nothing it
created is pending, with its webhook row in the finishing transaction; concurrent finishers have one
winner; the recovery pass finishes an import completed by a deletion."""
import threading
import uuid

import pytest
from sqlalchemy import func, select

from common import imports
from common.db import crud
from common.db.models import BulkImport, ImageState, ImportStatus, SourceImage, WebhookDelivery
from common.db.session import new_session

HOOK = "http://127.0.0.1:9/hooks"


def new_import(session, images: int = 1, callback_url: str | None = HOOK) -> tuple[uuid.UUID, uuid.UUID, list[int]]:
    """An open import with one created work of `images` pending images (rows only: nothing is embedded)."""
    import_id = imports.open_import(session, key_id=None, rights_holder="studio", callback_url=callback_url)
    work_id = uuid.uuid4()
    crud.create_work(session, work_id=work_id, title="w", rights_holder="studio", external_ref=None, licence=None,
                     import_item_id="item-1", import_id=import_id,
                     images=[SourceImage(content_sha256=uuid.uuid4().hex, storage_key=f"k{n}", media_type="image/png",
                                         byte_size=1, width=1, height=1) for n in range(images)])
    session.commit()
    return import_id, work_id, list(session.scalars(select(SourceImage.id).where(SourceImage.work_id == work_id)))


def set_state(session, image_ids: list[int], state: ImageState) -> None:
    for image_id in image_ids:
        session.get(SourceImage, image_id).state = state
    session.commit()


def deliveries(session, import_id) -> list[WebhookDelivery]:
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.import_id == import_id)))


@pytest.mark.parametrize("service_env", ["sqlite", "postgresql"], indirect=True)
def test_finishes_once_after_closing_when_nothing_is_pending(service_env):
    with new_session() as session:
        import_id, work_id, image_ids = new_import(session, images=2)
        set_state(session, image_ids, ImageState.embedded)
        # Still registering (the request may add more items): never finished, whatever is embedded.
        assert imports.finish_imports_of_images(session, image_ids) == []
        assert imports.finish_if_done(session, import_id) is False
        set_state(session, image_ids[1:], ImageState.pending)
        assert imports.close_import(session, import_id, {"created": 1, "refused": 2}) is False
        assert session.get(BulkImport, import_id).status == ImportStatus.embedding
        assert deliveries(session, import_id) == []
        set_state(session, image_ids[1:], ImageState.failed)  # failed counts as done
        assert imports.finish_imports_of_images(session, image_ids) == [import_id]
        assert imports.finish_imports_of_images(session, image_ids) == []
        assert imports.finish_if_done(session, import_id) is False
        [delivery] = deliveries(session, import_id)
        assert (delivery.event, delivery.url, delivery.job_id) == ("registration.finished", HOOK, None)
        data = delivery.payload["data"]
        assert data["id"] == str(import_id) and data["status"] == "finished"
        assert data["items"] == {"created": 1, "duplicate": 0, "refused": 2}
        assert data["images"] == {"total": 2, "pending": 0, "embedded": 1, "failed": 1, "deleted": 0}
        assert [f["image_id"] for f in data["failed"]] == image_ids[1:]


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_concurrent_finishers_have_exactly_one_winner(service_env):
    with new_session() as session:
        import_id, _, image_ids = new_import(session)
        imports.close_import(session, import_id, {"created": 1})
        set_state(session, image_ids, ImageState.embedded)
    results, start = [], threading.Barrier(8)

    def finisher():
        with new_session() as own:
            start.wait()
            results.append(imports.finish_if_done(own, import_id))

    threads = [threading.Thread(target=finisher) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    with new_session() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_recovery_finishes_an_import_whose_pending_work_was_deleted(service_env):
    with new_session() as session:
        import_id, work_id, _ = new_import(session, callback_url=None)
        imports.close_import(session, import_id, {"created": 1})
        assert imports.finish_ready_imports(session) == []
        crud.delete_work(session, work=crud.get_work(session, work_id=work_id))
        session.commit()
        assert imports.finish_ready_imports(session) == [import_id]
        assert session.get(BulkImport, import_id).status == ImportStatus.finished
        assert imports.progress(session, import_id)["deleted"] == 1
        assert deliveries(session, import_id) == []  # no callback_url: nothing to send

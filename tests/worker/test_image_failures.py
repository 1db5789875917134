"""Issue 7 (#1): no stored image can take workers down. Rows stored before today's upload checks
(here: written straight to the database) fail alone with their reason, the start-up catch-up skips
them, and an image whose embedding killed a worker is counted in its row and given up after
`max_image_attempts` (default 2) instead of being retried forever."""
import io
import uuid

import pytest
from PIL import Image

from common.db import crud
from common.db.models import ImageState, SourceImage
from common.db.session import new_session
from common.settings import get_settings
from common.storage import LocalStorage
from indexing.embedding import embed_source_images
from worker.runtime import Runtime
from tests.factories import photo_bytes


def store_work_unchecked(data: bytes, title: str, rights_holder: str = "studio") -> uuid.UUID:
    """A work whose image never went through check_image (e.g. registered before the check existed)."""
    work_id = uuid.uuid4()
    key = f"sources/{work_id}/{title}.png"
    LocalStorage(get_settings().storage_dir).put(key, data)
    with new_session() as session:
        crud.create_work(session, work_id=work_id, title=title, rights_holder=rights_holder, external_ref=None,
                         licence=None, images=[SourceImage(content_sha256=uuid.uuid4().hex, storage_key=key,
                                                           media_type="image/png", byte_size=len(data), width=1,
                                                           height=1)])
        session.commit()
    return work_id


def strip_png(width: int = 2000, height: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def image_of(work_id: uuid.UUID) -> SourceImage:
    with new_session() as session:
        return crud.get_work(session, work_id=work_id).images[0]


def test_a_stored_elongated_image_fails_alone_and_the_catch_up_skips_it(client):
    strip = store_work_unchecked(strip_png(), "strip")
    good = store_work_unchecked(photo_bytes("dog", 0), "dog")
    with new_session() as session:
        runtime = Runtime.load(session, get_settings())  # start-up catch-up embeds what lacks a vector
    failed = image_of(strip)
    assert failed.state == ImageState.failed and "too_elongated" in failed.error
    assert image_of(good).state == ImageState.embedded
    listed = client.get(f"/sources/{strip}").json()
    assert listed["searchable"] is False and listed["images"][0]["state"] == "failed"
    assert runtime.store.count() == 1
    with new_session() as session:  # a restarted worker starts cleanly and leaves the failed image alone
        assert Runtime.load(session, get_settings()).store.count() == 1
    assert image_of(strip).state == ImageState.failed


class DyingEncoder:
    """Stands in for a worker killed mid-batch (out of memory): the exception is not an Exception."""
    encoder_id = "dying"

    def embed(self, images, batch_size=16):
        raise KeyboardInterrupt("killed")


def test_attempts_are_persisted_before_embedding_and_a_crasher_is_given_up(client):
    works = [store_work_unchecked(photo_bytes(subject, 0), subject) for subject in ("dog", "cat")]
    storage = LocalStorage(get_settings().storage_dir)
    with new_session() as session, pytest.raises(KeyboardInterrupt):
        embed_source_images(session, DyingEncoder(), storage, crud.pending_images(session), 8)
    assert [image_of(w).attempts for w in works] == [1, 1]  # committed before the worker "died"
    with new_session() as session:  # the restarted worker: suspects go one at a time
        runtime = Runtime.load(session, get_settings())
    assert [image_of(w).state for w in works] == [ImageState.embedded] * 2
    assert [image_of(w).attempts for w in works] == [0, 0]
    assert runtime.store.count() == 2


def test_an_image_that_stopped_a_worker_twice_is_marked_failed(client):
    work = store_work_unchecked(photo_bytes("dog", 0), "dog")
    storage = LocalStorage(get_settings().storage_dir)
    for _ in range(2):
        with new_session() as session, pytest.raises(KeyboardInterrupt):
            embed_source_images(session, DyingEncoder(), storage, crud.pending_images(session), 8)
    with new_session() as session:
        Runtime.load(session, get_settings())
    image = image_of(work)
    assert image.state == ImageState.failed and "stopped a worker 2 times" in image.error


def test_a_suspect_image_is_checked_in_the_decode_budget_before_the_worker_risks_it(client, monkeypatch):
    """An image whose batch took a worker down is decoded in the upload check's sandbox first: too
    costly there, it fails with that reason and the worker never decodes it itself."""
    from tests.corpus.make_corpus import progressive_jpeg_with_scans
    costly = store_work_unchecked(progressive_jpeg_with_scans(400, size=(4096, 4096), flat=True), "scans")
    monkeypatch.setenv("ATTRIB_MAX_JPEG_SCANS", "100000")  # as if stored before the scan limit existed
    monkeypatch.setenv("ATTRIB_IMAGE_DECODE_CPU_S", "1")
    get_settings.cache_clear()
    with new_session() as session:
        session.get(SourceImage, image_of(costly).id).attempts = 1  # its batch killed a worker once
        session.commit()
        embed_source_images(session, DyingEncoder(), LocalStorage(get_settings().storage_dir),
                            crud.pending_images(session), 8)  # the encoder is never reached
        session.commit()
    image = image_of(costly)
    assert image.state == ImageState.failed and "too_costly" in image.error

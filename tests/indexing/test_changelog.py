"""The change log: sequence order is commit order (two interleaved writers never make a reader skip a
row), a sync reads only what changed, deletes reach every encoder's index, and re-embedding resumes."""
import threading
import uuid

import numpy as np
import pytest
from sqlalchemy import select

from common.db import crud
from common.db.models import Embedding, ImageState, SourceImage
from common.db.session import new_session
from common.storage import LocalStorage
from indexing import changelog
from indexing.backends.faiss import empty_store
from indexing.embedding import embed_missing, write_vectors
from indexing.follower import sync_store
from tests.factories import photo_bytes

DIM = 4


def make_images(n: int, storage: LocalStorage | None = None) -> list[int]:
    """One work with n images (real photo bytes when a storage is given); returns their ids."""
    with new_session() as session:
        images = []
        for i in range(n):
            key = f"sources/{uuid.uuid4().hex}/{i}.jpg"
            if storage is not None:
                storage.put(key, photo_bytes("dog", i % 4))
            images.append(SourceImage(content_sha256=uuid.uuid4().hex, storage_key=key, media_type="image/jpeg",
                                      byte_size=1, width=32, height=32))
        crud.create_work(session, work_id=uuid.uuid4(), title="t", rights_holder="r", external_ref=None,
                         licence=None, images=images)
        session.commit()
        return [image.id for image in images]


def embed(session, image_ids: list[int], encoder_id: str = "enc") -> None:
    rows = [session.get(SourceImage, i) for i in image_ids]
    write_vectors(session, rows, np.eye(len(rows), DIM, dtype=np.float32), encoder_id)


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_interleaved_writers_never_make_a_reader_skip_a_row(service_env):
    first_ids, second_ids = make_images(2), make_images(2)
    store = empty_store("enc", DIM)
    first = new_session()
    embed(first, first_ids)  # takes the smaller numbers, holds the counter's row lock, not committed yet
    second_done = threading.Event()

    def second_writer():
        with new_session() as second:
            embed(second, second_ids)  # larger numbers: must wait until the first commits
            second.commit()
        second_done.set()

    thread = threading.Thread(target=second_writer)
    thread.start()
    assert not second_done.wait(0.5)  # blocked on the counter row, so it cannot commit first
    with new_session() as reader:
        assert sync_store(reader, store).rows_read == 0  # neither is visible yet
    first.commit()
    first.close()
    thread.join(10)
    with new_session() as reader:
        sync_store(reader, store)
        seqs = [seq for seq, *_ in reader.execute(changelog.select(changelog.VectorChange.seq)).all()]
    assert sorted(store.ids().tolist()) == sorted(first_ids + second_ids)
    assert sorted(seqs) == [1, 2, 3, 4] and store.applied_seq == 4


@pytest.mark.parametrize("service_env", ["postgresql", "sqlite"], indirect=True)
def test_a_sync_reads_only_the_changed_rows(service_env):
    ids = make_images(51)
    with new_session() as session:
        embed(session, ids[:50])
        session.commit()
        store = empty_store("enc", DIM)
        assert sync_store(session, store).rows_read == 50
        assert sync_store(session, store).rows_read == 0  # nothing new: only the head was read
        embed(session, ids[50:])
        session.commit()
        result = sync_store(session, store)
    assert (result.rows_read, result.upserted, store.count()) == (1, 1, 51)


def test_deletes_apply_to_every_encoder_and_other_encoders_upserts_are_skipped(service_env):
    ids = make_images(3)
    with new_session() as session:
        embed(session, ids, "enc")
        embed(session, ids, "other")
        session.commit()
        store = empty_store("enc", DIM)
        assert sync_store(session, store).upserted == 3
        work = crud.get_work(session, work_id=session.get(SourceImage, ids[0]).work_id)
        crud.delete_work(session, work=work)
        session.commit()
        result = sync_store(session, store)
    assert (result.deleted, store.count()) == (3, 0)


@pytest.mark.parametrize("service_env", ["postgresql", "sqlite"], indirect=True)
def test_writing_vectors_again_replaces_them_and_logs_each_write(service_env):
    """A retried job writes vectors that may exist already (some of its images, not all): one row per
    (image, encoder) holds the latest, and every write is logged so followers take the latest too."""
    ids = make_images(3)
    store = empty_store("enc", DIM)
    with new_session() as session:
        embed(session, ids[:2])
        session.commit()
        sync_store(session, store)
        rows = [session.get(SourceImage, i) for i in ids]
        write_vectors(session, rows, np.eye(DIM, dtype=np.float32)[[3, 2, 1]], "enc")
        session.commit()
        result = sync_store(session, store)
        stored = {e.image_id: np.frombuffer(e.vector, dtype=np.float32).argmax()
                  for e in session.scalars(select(Embedding))}
    assert stored == {ids[0]: 3, ids[1]: 2, ids[2]: 1}
    assert (result.rows_read, store.count()) == (3, 3)
    hits, _ = store.search(np.eye(DIM, dtype=np.float32)[[3]], 1)
    assert hits[0][0] == ids[0]


class CountingEncoder:
    """Stands in for the network (the database and storage are real): counts what it embeds."""
    encoder_id, dim = "stub@1", DIM

    def __init__(self):
        self.embedded = 0

    def embed(self, images, batch_size=8):
        self.embedded += len(images)
        return np.tile(np.eye(1, DIM, dtype=np.float32), (len(images), 1))


def test_re_embedding_resumes_after_a_crash(service_env, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    ids = make_images(10, storage)
    with new_session() as session:
        session.get(SourceImage, ids[3]).storage_key = "sources/missing.jpg"  # unreadable: marked failed
        session.commit()
    encoder, seen = CountingEncoder(), []

    def crash_after_two_batches(n):
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with new_session() as session, pytest.raises(KeyboardInterrupt):
        embed_missing(session, encoder, storage, batch_size=3, progress=crash_after_two_batches)
    with new_session() as session:
        assert embed_missing(session, encoder, storage, batch_size=3) == 4  # only what was left
        assert session.get(SourceImage, ids[3]).state == ImageState.failed
        deletes = changelog.read_changes(session, encoder_id="stub@1", after=0).deletes.tolist()
    assert encoder.embedded == 9 and deletes == [ids[3]]

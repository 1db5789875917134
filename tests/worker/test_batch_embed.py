"""The batched embedding job in process: it embeds only pending images of live works, commits batch by
batch, and when attributions wait it stops after one forward batch and puts the rest back at the front
of the embedding queue (the worker then takes the attribution queue first)."""
import json

import pytest
from redis import Redis
from sqlalchemy import select

from common.db.models import ImageState, SourceImage
from common.db.session import new_session
from common.jobs import embed_job_id, enqueue_attribution, get_queues
from common.settings import get_settings
from tests.factories import photo_bytes
from worker import jobs, runtime as runtime_module
from worker.runtime import Runtime


def bulk_register(client, subjects) -> list[int]:
    return bulk_import(client, subjects)[1]


def bulk_import(client, subjects) -> tuple[str, list[int]]:
    """The import's id and its images' ids."""
    items = [{"item_id": s, "title": s, "rights_holder": "studio", "files": [f"{s}.jpg"]} for s in subjects]
    files = [("files", (f"{s}.jpg", photo_bytes(s, 0), "image/jpeg")) for s in subjects]
    response = client.post("/sources/bulk", data={"manifest": json.dumps({"items": items})}, files=files)
    assert response.json()["summary"]["created"] == len(subjects), response.text
    with new_session() as session:
        return response.json()["import_id"], list(session.scalars(select(SourceImage.id).order_by(SourceImage.id)))


def states() -> list[ImageState]:
    with new_session() as session:
        return list(session.scalars(select(SourceImage.state).order_by(SourceImage.id)))


def load_runtime() -> None:
    with new_session() as session:
        runtime_module.set_runtime(Runtime.load(session, get_settings()))


def test_embedding_yields_to_a_waiting_attribution_then_resumes(client, monkeypatch):
    monkeypatch.setattr(get_settings(), "embed_batch_size", 1)
    load_runtime()  # before registering: a starting runtime embeds what is pending
    import_id, ids = bulk_import(client, ["dog", "cat", "teapot"])
    queues = get_queues(Redis.from_url(get_settings().redis_url), get_settings().queue_name)
    for queue in queues.by_kind():
        queue.empty()
    enqueue_attribution(queues.attribute, "00000000-0000-0000-0000-000000000000")  # an attribution waits

    assert jobs.embed_images(ids) == 1  # one forward batch, then it yields
    assert states() == [ImageState.embedded, ImageState.pending, ImageState.pending]
    assert queues.embed.job_ids == [embed_job_id(ids[1:])]
    assert client.get(f"/v1/sources/bulk/{import_id}").json()["status"] == "embedding"
    feeder = runtime_module.get_runtime().feeder

    queues.attribute.empty()  # nothing waits any more: the rest goes through in one job
    assert jobs.embed_images(ids[1:]) == 2
    assert states() == [ImageState.embedded] * 3
    # One decode pipeline per worker: the job after the one that stopped early reused its pools.
    assert runtime_module.get_runtime().feeder is feeder
    # The job that embedded the import's last image finished it.
    shown = client.get(f"/v1/sources/bulk/{import_id}").json()
    assert (shown["status"], shown["images"]["embedded"]) == ("finished", 3)
    assert runtime_module.get_runtime().store.count() == 3
    assert jobs.embed_images(ids) == 0  # a retried or duplicated job finds nothing pending


def test_a_worker_without_the_attribution_queue_never_yields(client, monkeypatch):
    monkeypatch.setattr(get_settings(), "embed_batch_size", 1)
    monkeypatch.setattr(jobs, "SERVES_ATTRIBUTION", False)
    load_runtime()
    ids = bulk_register(client, ["dog", "cat"])
    queues = get_queues(Redis.from_url(get_settings().redis_url), get_settings().queue_name)
    enqueue_attribution(queues.attribute, "00000000-0000-0000-0000-000000000000")
    assert jobs.embed_images(ids) == 2


def test_an_image_that_once_stopped_a_worker_is_embedded_once_alone(client):
    from sqlalchemy import func, update
    from common.db.models import VectorChange
    load_runtime()
    ids = bulk_register(client, ["dog", "cat"])
    with new_session() as session:  # a worker died while embedding the dog: its attempt stayed counted
        session.execute(update(SourceImage).where(SourceImage.id == ids[0]).values(attempts=1))
        session.commit()
    assert jobs.embed_images(ids) == 2  # the dog the careful way, the cat in the batch: each once
    with new_session() as session:
        upserts = session.scalar(select(func.count()).select_from(VectorChange).where(
            VectorChange.op == "upsert", VectorChange.image_id == ids[0]))
        attempts = session.scalars(select(SourceImage.attempts).order_by(SourceImage.id)).all()
    assert upserts == 1 and attempts == [0, 0] and states() == [ImageState.embedded] * 2


def test_vectors_of_a_work_deleted_during_the_job_are_dropped(client, monkeypatch):
    """DELETE /sources purges the vectors it sees; the job writes its vectors later, so it drops those of
    works deleted meanwhile itself (one query for all of its works)."""
    from sqlalchemy import func
    from common.db import crud
    from common.db.models import Embedding, VectorChange
    monkeypatch.setenv("ATTRIB_EMBED_BATCH_SIZE", "1")
    get_settings.cache_clear()
    load_runtime()
    ids = bulk_register(client, ["dog", "cat", "duck_toy"])
    with new_session() as session:
        dog_work = session.get(SourceImage, ids[0]).work_id

    def delete_the_dog_once():  # between two forward batches, as a concurrent DELETE /sources would
        if not deleted:
            with new_session() as other:
                crud.delete_work(other, work=crud.get_work(other, work_id=dog_work))
                other.commit()
            deleted.append(dog_work)
        return False
    deleted = []
    monkeypatch.setattr(jobs, "_attributions_waiting", delete_the_dog_once)
    assert jobs.embed_images(ids) == 3 and deleted == [dog_work]
    with new_session() as session:
        vectors = set(session.scalars(select(Embedding.image_id)))
        last_op = session.scalar(select(VectorChange.op).where(VectorChange.image_id == ids[0])
                                 .order_by(VectorChange.seq.desc()).limit(1))
        upserts = session.scalar(select(func.count()).select_from(VectorChange).where(VectorChange.op == "upsert"))
    assert vectors == set(ids[1:]) and last_op == "delete" and upserts == 3


def test_an_image_that_cannot_be_read_fails_alone_and_leaves_every_index(client):
    """The job's writer thread marks it failed with the reason, in the transaction that writes the
    others' vectors, and logs a delete for it (a vector of an earlier encoder must go too)."""
    from common.db.models import VectorChange
    from common.storage import get_storage
    load_runtime()
    ids = bulk_register(client, ["dog", "cat", "teapot"])
    with new_session() as session:
        get_storage(get_settings()).delete(session.get(SourceImage, ids[1]).storage_key)
    assert jobs.embed_images(ids) == 2
    assert states() == [ImageState.embedded, ImageState.failed, ImageState.embedded]
    with new_session() as session:
        assert "cannot read stored image" in session.get(SourceImage, ids[1]).error
        ops = session.execute(select(VectorChange.image_id, VectorChange.op)).all()
    assert sorted(ops) == sorted([(ids[0], "upsert"), (ids[2], "upsert"), (ids[1], "delete")])
    assert runtime_module.get_runtime().store.count() == 2


def test_a_vector_write_that_fails_fails_the_job_and_the_retry_embeds_the_images(client, monkeypatch):
    """The vectors are written off the job's thread; a write that fails must still fail the job (RQ then
    retries it), and its images stay pending, counted as tried once."""
    from worker import batch_embed
    load_runtime()
    ids = bulk_register(client, ["dog", "cat"])
    real = batch_embed.write_vectors_of_ids

    def broken(*args):
        raise RuntimeError("database went away")
    monkeypatch.setattr(batch_embed, "write_vectors_of_ids", broken)
    with pytest.raises(RuntimeError, match="database went away"):
        jobs.embed_images(ids)
    with new_session() as session:
        attempts = session.scalars(select(SourceImage.attempts).order_by(SourceImage.id)).all()
    assert states() == [ImageState.pending] * 2 and attempts == [1, 1]

    monkeypatch.setattr(batch_embed, "write_vectors_of_ids", real)
    assert jobs.embed_images(ids) == 2  # the retry: each image the careful way, alone
    assert states() == [ImageState.embedded] * 2


def test_an_embedding_only_worker_embeds_without_holding_an_index(client):
    """`python -m worker --queues embed` loads no store (at 10M it would hold 1.7 GB of codes of its own,
    load a snapshot at start and sync after every job); what it embeds reaches the attribution worker's
    index through the change log."""
    with new_session() as session:
        embedder = Runtime.load(session, get_settings(), with_index=False)
        searcher = Runtime.load(session, get_settings())
    runtime_module.set_runtime(embedder)
    _, ids = bulk_import(client, ["dog", "cat"])
    assert jobs.embed_images(ids) == 2 and states() == [ImageState.embedded] * 2
    assert embedder.live is None and embedder.snapshot(None) is None
    with pytest.raises(RuntimeError, match="no index"):
        _ = embedder.store
    described = embedder.describe()
    assert described["index_size"] is None and described["index_type"] is None
    assert described["loaded_from"] == "no index: this worker only embeds"
    # no attribution arrives: the snapshot tick applies the log itself, so the snapshot holds the import
    assert searcher.snapshot(None) is not None and searcher.store.count() == 2
    assert searcher.live.snapshot_seq == searcher.store.applied_seq > 0

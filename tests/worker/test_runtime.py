"""A worker's runtime: several workers see the same works through the database; a restarted worker
loads its index from disk; a corrupt or foreign index is never served, the database rebuilds it."""
import numpy as np
import pytest

from common.db import crud
from common.db.session import new_session
from common.settings import get_settings
from common.storage import LocalStorage
from indexing.embedding import embed_source_images
from indexing.store import live_index_dir
from worker.runtime import Runtime
from tests.factories import photo_bytes


def register(client, subject: str) -> str:
    files = [("images", (f"{subject}{i}.jpg", photo_bytes(subject, i), "image/jpeg")) for i in (0, 1)]
    response = client.post("/sources", files=files, data={"title": subject, "rights_holder": "studio"})
    assert response.status_code == 201
    return response.json()["id"]


def embed_pending(runtime: Runtime) -> None:
    with new_session() as session:
        storage = LocalStorage(runtime.settings.storage_dir)
        embed_source_images(session, runtime.encoder, storage, crud.pending_images(session), 4)
        session.commit()


def load_runtime() -> Runtime:
    with new_session() as session:
        return Runtime.load(session, get_settings())


def sync(runtime: Runtime) -> None:
    with new_session() as session:
        runtime.sync(session)


def test_two_workers_share_works_through_the_database(client):
    first, second = load_runtime(), load_runtime()
    dog = register(client, "dog")
    embed_pending(first)
    sync(first)
    sync(second)
    assert len(first.index) == len(second.index) == 2
    assert sorted(first.index.ids()) == sorted(second.index.ids())
    client.delete(f"/sources/{dog}")
    sync(second)
    assert len(second.index) == 0


def test_restarted_worker_loads_its_index_from_disk(client):
    runtime = load_runtime()
    register(client, "cat")
    embed_pending(runtime)
    sync(runtime)
    restarted = load_runtime()
    assert restarted.loaded_from == str(live_index_dir(get_settings().artifacts_dir, runtime.encoder.encoder_id))
    assert restarted.index.index_id == runtime.index.index_id
    assert sorted(restarted.index.ids()) == sorted(runtime.index.ids())


@pytest.mark.parametrize("damage", ["garbage", "missing_file", "other_encoder"])
def test_damaged_index_is_rebuilt_from_the_database(client, damage):
    runtime = load_runtime()
    register(client, "teapot")
    embed_pending(runtime)
    sync(runtime)
    directory = live_index_dir(get_settings().artifacts_dir, runtime.encoder.encoder_id)
    if damage == "garbage":
        (directory / "index.faiss").write_bytes(b"\x00" * 64)
    elif damage == "missing_file":
        (directory / "index.faiss").unlink()
    else:
        sidecar = directory / "index.json"
        sidecar.write_text(sidecar.read_text().replace(runtime.encoder.encoder_id, "someone-else@1"))
    rebuilt = load_runtime()
    assert rebuilt.loaded_from == "database"
    assert sorted(rebuilt.index.ids()) == sorted(runtime.index.ids())
    query = runtime.index.search(np.eye(1, runtime.encoder.dim, dtype=np.float32), 2)
    assert rebuilt.index.search(np.eye(1, runtime.encoder.dim, dtype=np.float32), 2)[0].tolist() == query[0].tolist()

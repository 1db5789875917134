"""`python -m worker.consistency`: the saved index (newest snapshot + the log replayed) agrees with the
database, or the report says how it does not (exit 1); `--repair` rebuilds it from the database."""
import subprocess
import sys
import uuid

import numpy as np

from common.db import crud
from common.db.models import Embedding, SourceImage
from common.db.session import new_session
from common.settings import get_settings
from common.storage import LocalStorage
from indexing.embedding import embed_source_images
from indexing.snapshots import load_snapshot, write_snapshot
from tests.conftest import REPO
from tests.factories import photo_bytes
from worker.consistency import main
from worker.runtime import Runtime


def register(client, subject: str) -> str:
    files = [("images", (f"{subject}{i}.jpg", photo_bytes(subject, i), "image/jpeg")) for i in (0, 1)]
    response = client.post("/sources", files=files, data={"title": subject, "rights_holder": "studio"})
    assert response.status_code == 201
    return response.json()["id"]


def embed_and_save() -> Runtime:
    """What a worker does: embed pending images, sync its index, write a snapshot (as the writer)."""
    with new_session() as session:
        runtime = Runtime.load(session, get_settings())
        embed_source_images(session, runtime.encoder, LocalStorage(runtime.settings.storage_dir),
                            crud.pending_images(session), 4)
        session.commit()
        runtime.sync(session)
    assert runtime.snapshot(None) is not None
    return runtime


def saved(runtime: Runtime):
    storage = LocalStorage(runtime.settings.storage_dir)
    return load_snapshot(storage, runtime.encoder.encoder_id, runtime.settings.cache_dir, mmap=False)[0]


def run_check(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_consistent_then_tampered_then_repaired(client, capsys):
    register(client, "dog")
    cat = register(client, "cat")
    runtime = embed_and_save()
    code, out = run_check(capsys)
    assert code == 0, out
    assert "missing from index: 0" in out and "consistent" in out

    with new_session() as session:  # keep cat's vectors to plant them back after the delete
        cat_images = session.query(SourceImage).filter(SourceImage.work_id == uuid.UUID(cat)).all()
        cat_vectors = {i.id: session.get(Embedding, (i.id, runtime.encoder.encoder_id)).vector for i in cat_images}
    assert client.delete(f"/sources/{cat}").status_code == 204
    snapshot = saved(runtime)
    dog_ids = [i for i in snapshot.ids().tolist() if i not in cat_vectors]
    snapshot.delete(np.asarray(dog_ids[:1]))  # one live vector lost from the saved index (not in the log)
    snapshot.upsert(np.asarray([10**9]), np.ones((1, snapshot.dim), np.float32))  # one no row explains
    write_snapshot(LocalStorage(runtime.settings.storage_dir), snapshot)
    with new_session() as session:  # and one vector of the deleted work left in the database
        image_id, blob = next(iter(cat_vectors.items()))
        session.add(Embedding(image_id=image_id, encoder_id=runtime.encoder.encoder_id, vector=blob))
        session.commit()

    code, out = run_check(capsys)
    assert code == 1
    assert f"missing from index: 1 [{dog_ids[0]}]" in out
    # cat's vectors are still in the snapshot, but the log's deletes are replayed on top of it
    assert "stale in index: 1 [1000000000]" in out and "of deleted works: 0" in out
    assert "vectors of deleted works in database: 1" in out and "INCONSISTENT" in out

    code, out = run_check(capsys, "--repair")
    assert code == 0, out
    assert saved(runtime).count() == 2
    entry_point = subprocess.run([sys.executable, "-m", "worker.consistency"], cwd=REPO, capture_output=True,
                                 text=True, timeout=60)
    assert entry_point.returncode == 0, entry_point.stdout + entry_point.stderr


def test_worker_and_check_read_the_published_index_the_same_way(service_env, tmp_path):
    """One load order (indexing.live.saved_store): no snapshot, so both look at the active pair's index.
    A worker skips one it cannot serve and builds from the database; the check reports it."""
    from common.db.models import ModelPair
    from indexing import live
    from worker.consistency import active_encoder_id_and_dim, check
    published = tmp_path / "published-index"
    published.mkdir()
    (published / "index.json").write_text("{not json")
    settings = get_settings()
    with new_session() as session:
        session.add(ModelPair(encoder_id="e", encoder_uri=settings.encoder, index_path=str(published), active=True))
        session.commit()
        encoder_id, dim = active_encoder_id_and_dim(session, settings)
        assert (encoder_id, dim) == (Runtime.load(session, settings).encoder.encoder_id, 1280)
        assert live.saved_store(settings, encoder_id, str(published)) is None
        report = check(session, settings, encoder_id)
    assert "cannot read index" in report.index_problem and not report.consistent

"""Issue 7 (#9, #14): the same bytes live once per rights holder among live works, enforced by the
database, so concurrent registrations cannot split attribution shares between duplicate works; the
migration copes with duplicates stored before the index existed; deleting a work empties its folder."""
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from common.db.schema import alembic_config
from common.db.session import make_engine
from tests.conftest import reset_database, url_for
from tests.factories import photo_bytes


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_concurrent_registrations_of_the_same_bytes_make_one_work(client):
    files = [("images", ("vase.jpg", photo_bytes("vase", 0), "image/jpeg"))]

    def register(i: int):
        return client.post("/sources", files=files, data={"title": f"vase {i}", "rights_holder": "studio"})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(register, range(8)))
    assert sorted(r.status_code for r in responses).count(201) == 1, [r.text for r in responses]
    assert {r.status_code for r in responses} <= {200, 201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert client.get("/sources?with_count=true").json()["count"] == 1


def test_deleted_work_frees_its_bytes_and_its_folder(client, service_env):
    files = [("images", ("cat.jpg", photo_bytes("cat", 0), "image/jpeg"))]
    first = client.post("/sources", files=files, data={"title": "cat", "rights_holder": "studio"}).json()
    assert client.delete(f"/sources/{first['id']}").status_code == 204
    sources = Path(service_env["ATTRIB_DATA_DIR"]) / "storage" / "sources"
    assert not (sources / first["id"]).exists()
    again = client.post("/sources", files=files, data={"title": "cat", "rights_holder": "studio"})
    assert again.status_code == 201 and again.json()["id"] != first["id"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_sets_aside_duplicates_stored_before_it(kind, tmp_path):
    url = url_for(kind, tmp_path)
    reset_database(url)
    config = alembic_config(url)
    before = ScriptDirectory.from_config(config).get_revision("0004").down_revision
    command.downgrade(config, before)  # just before this revision, wherever it sits in the chain
    engine = make_engine(url)
    works = [uuid.uuid4() for _ in range(2)]
    with engine.begin() as conn:
        for n, work_id in enumerate(works):
            work_id = work_id.hex if kind == "sqlite" else work_id  # how each stores a Uuid column
            conn.execute(text("INSERT INTO works (id, title, rights_holder, created_at) "
                              "VALUES (:id, 't', 'studio', :at)"), {"id": work_id, "at": f"2026-01-0{n + 1}"})
            conn.execute(text("INSERT INTO source_images (work_id, content_sha256, storage_key, media_type, "
                              "byte_size, width, height, state, created_at) VALUES (:w, 'abc', :k, 'image/jpeg', "
                              "1, 1, 1, 'embedded', :at)"), {"w": work_id, "k": f"k{n}", "at": f"2026-01-0{n + 1}"})
    command.upgrade(alembic_config(url), "head")  # never fails on duplicates
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT work_id, live, rights_holder FROM source_images ORDER BY created_at")).all()
    engine.dispose()
    assert [(str(w).replace("-", ""), live, holder) for w, live, holder in rows] == [
        (works[0].hex, True, "studio"), (works[1].hex, False, "studio")]

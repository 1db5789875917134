"""Workers on other hosts join through Redis and the database alone: with S3 storage the API and the worker
below share no folder (each has its own data directory), yet registration, attribution and deletion work,
and no image lands on either local disk."""
import pytest

from common.storage import S3Storage
from tests.app.test_end_to_end import attribute, register, wait_searchable
from tests.conftest import clear_cached_config
from tests.factories import photo_bytes


@pytest.fixture
def s3_env(service_env, s3_server, monkeypatch):
    storage = {"ATTRIB_STORAGE_URL": f"s3://{s3_server.new_bucket()}/attrib",
               "ATTRIB_S3_ENDPOINT_URL": s3_server.endpoint}
    for key, value in storage.items():
        monkeypatch.setenv(key, value)
    clear_cached_config()
    service_env.update(storage)
    return S3Storage(storage["ATTRIB_STORAGE_URL"], endpoint_url=s3_server.endpoint)


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_worker_with_its_own_disk_serves_through_s3(s3_env, client, service_env, tmp_path):
    from tests.conftest import WorkerProcess
    other_host = {**service_env, "ATTRIB_DATA_DIR": str(tmp_path / "other-host")}
    worker = WorkerProcess(other_host, "remote-worker", tmp_path / "worker.log").start()
    try:
        dog, cat = register(client, "dog")["id"], register(client, "cat")["id"]
        wait_searchable(client, [dog, cat])
        found = attribute(client, photo_bytes("dog", 0))
        assert found["matches"][0]["work_id"] == dog
        assert len(list(s3_env.list(f"sources/{dog}"))) == 2
        assert list(s3_env.list("queries")) == []           # the query image is forgotten after the job
        assert client.delete(f"/sources/{dog}").status_code == 204
        assert list(s3_env.list(f"sources/{dog}")) == []
        assert dog not in {m["work_id"] for m in attribute(client, photo_bytes("dog", 0))["matches"]}
    finally:
        worker.stop()
    for data_dir in (service_env["ATTRIB_DATA_DIR"], other_host["ATTRIB_DATA_DIR"]):
        assert not (tmp_path / data_dir / "storage").exists()  # nothing stored on either host's disk


def test_published_artefacts_reach_a_host_that_shares_no_disk(s3_server, tmp_path):
    """A pair published with S3 storage names `storage:` prefixes; another host resolves them to a cache."""
    from common.settings import Settings
    from indexing.artifacts import resolve, upload_dir, uploads_artifacts
    url = f"s3://{s3_server.new_bucket()}/attrib"
    publisher = Settings(storage_url=url, s3_endpoint_url=s3_server.endpoint, data_dir=tmp_path / "trainer")
    exported = tmp_path / "trainer" / "export"
    (exported / "sub").mkdir(parents=True)
    (exported / "encoder.json").write_text('{"dim": 4}')
    (exported / "sub" / "weights.pt").write_bytes(b"w" * 64)
    assert uploads_artifacts(publisher)
    spec = upload_dir(publisher, exported, "artifacts/pairs/abc/encoder")
    worker = Settings(storage_url=url, s3_endpoint_url=s3_server.endpoint, data_dir=tmp_path / "worker")
    local = resolve(spec, worker)
    assert spec == "storage:artifacts/pairs/abc/encoder" and local.startswith(str(tmp_path / "worker"))
    assert (tmp_path / "worker" / local).joinpath("sub", "weights.pt").read_bytes() == b"w" * 64
    assert resolve("/some/local/dir", worker) == "/some/local/dir" and resolve(None, worker) is None
    assert not uploads_artifacts(Settings(data_dir=tmp_path))

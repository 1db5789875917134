"""The end-to-end scenario of test_end_to_end.py with ATTRIB_VECTOR_BACKEND=milvus (milvus-lite), on
PostgreSQL, with two worker processes. milvus-lite serves one process per data file, so each worker takes
its own `milvus/worker-N.db` under the data dir (a lock file per slot); the test process opens none of them.
Against a Milvus server all workers would share one collection instead (ATTRIB_MILVUS_URI)."""
import pytest

from tests.app.test_end_to_end import SUBJECTS, attribute, register, wait_searchable
from tests.factories import cropped_reencoded, photo_bytes


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_register_attribute_delete_on_milvus(service_env, client, start_worker, tmp_path):
    service_env["ATTRIB_VECTOR_BACKEND"] = "milvus"
    start_worker(), start_worker()
    works = {subject: register(client, subject) for subject in SUBJECTS}
    wait_searchable(client, [w["id"] for w in works.values()])
    dog = works["dog"]["id"]

    exact = attribute(client, photo_bytes("dog", 0))
    assert exact["matches"][0]["work_id"] == dog
    assert exact["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert exact["index_id"].startswith("attrib_efficientnet_lite0")  # served by a Milvus collection
    assert exact["index_size"] == 2 * len(SUBJECTS)
    assert attribute(client, cropped_reencoded("dog", 1), top_k=3)["matches"][0]["work_id"] == dog

    assert client.delete(f"/sources/{dog}").status_code == 204
    for _ in range(4):  # both workers serve in turn: neither brings the deleted work back
        after = attribute(client, photo_bytes("dog", 0))
        assert dog not in {m["work_id"] for m in after["matches"]}
        assert after["index_size"] == 2 * (len(SUBJECTS) - 1)
    milvus_dir = tmp_path / "data" / "milvus"
    assert sorted(p.name for p in milvus_dir.glob("*.db")) == ["worker-0.db", "worker-1.db"]


def test_each_process_slot_is_its_own_lite_file(tmp_path):
    from indexing.backends.milvus import lite_file_for_this_process
    first, second = lite_file_for_this_process(tmp_path), lite_file_for_this_process(tmp_path)
    assert first.endswith("worker-0.db") and second.endswith("worker-1.db")

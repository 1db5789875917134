"""Through HTTP with real worker processes, Redis and each database: register works, attribute
copies of a registered photo, delete the work, and see it vanish from results. The scenario runs once per
vector backend on PostgreSQL (the `vector_backend` fixture: FAISS, and Milvus through milvus-lite, where
each worker process has its own lite file because a lite file serves one process)."""
import os
import time
from pathlib import Path

import pytest

from common.settings import Settings
from tests.factories import cropped_reencoded, photo_bytes

SUBJECTS = ["dog", "cat", "backpack", "teapot", "robot_toy", "vase"]


def register(client, subject: str, indices=(0, 1)) -> dict:
    files = [("images", (f"{subject}-{i}.jpg", photo_bytes(subject, i), "image/jpeg")) for i in indices]
    response = client.post("/sources", files=files, data={"title": subject, "rights_holder": "studio"})
    assert response.status_code == 201, response.text
    return response.json()


def wait_searchable(client, work_ids: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    pending = set(work_ids)
    while pending and time.monotonic() < deadline:
        pending = {w for w in pending if not client.get(f"/sources/{w}").json()["searchable"]}
        time.sleep(0.2)
    assert not pending, f"works never became searchable: {pending}"


def attribute(client, data: bytes, **params) -> dict:
    response = client.post("/attribute", params={"wait": 30, **params},
                           files={"image": ("query.jpg", data, "application/octet-stream")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done", body
    return body


@pytest.mark.parametrize("service_env, vector_backend",
                         [("sqlite", "faiss"), ("postgresql", "faiss"), ("postgresql", "milvus")], indirect=True)
def test_register_attribute_delete(vector_backend, client, start_worker, tmp_path):
    # With milvus-lite every worker process fills its own file, so two workers show that each file follows
    # registrations and deletes. (FAISS workers following one log: tests/worker/test_runtime.py, in-process.)
    for _ in range(2 if vector_backend == "milvus" else 1):
        start_worker()
    works = {subject: register(client, subject) for subject in SUBJECTS}
    wait_searchable(client, [w["id"] for w in works.values()])
    dog = works["dog"]["id"]

    exact = attribute(client, photo_bytes("dog", 0))
    assert exact["matches"][0]["work_id"] == dog
    assert exact["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert exact["encoder_id"].startswith("efficientnet-lite0-imagenet@")
    assert exact["index_size"] == 2 * len(SUBJECTS)
    assert sum(m["share"] for m in exact["matches"]) + exact["unattributed"] == pytest.approx(1.0)
    thumbnail = client.get(exact["query_thumbnail_url"].removeprefix("http://testserver"))  # made by the worker
    assert thumbnail.status_code == 200 and thumbnail.content.startswith(b"\xff\xd8")

    near_copy = attribute(client, cropped_reencoded("dog", 1), top_k=3)
    assert near_copy["matches"][0]["work_id"] == dog
    assert len(near_copy["matches"]) == 3

    assert client.delete(f"/sources/{dog}").status_code == 204
    for _ in range(4):  # with two workers, both serve in turn: neither brings the deleted work back
        after = attribute(client, photo_bytes("dog", 0))
        assert dog not in {m["work_id"] for m in after["matches"]}
        assert after["index_size"] == 2 * (len(SUBJECTS) - 1)  # gone from the engine, not only filtered
    old = client.get(f"/attribute/{exact['id']}").json()
    assert dog not in {m["work_id"] for m in old["matches"]}
    assert client.get(f"/sources/{dog}").status_code == 404
    if vector_backend == "milvus":  # served by a Milvus collection, one lite file per worker process
        assert exact["index_id"].startswith("attrib_efficientnet_lite0")
        assert sorted(p.name for p in (tmp_path / "data" / "milvus").glob("*.db")) == ["worker-0.db", "worker-1.db"]


def test_job_is_queued_then_readable(client, start_worker):
    start_worker()
    work = register(client, "teapot")
    wait_searchable(client, [work["id"]])
    response = client.post("/attribute", files={"image": ("q.jpg", photo_bytes("teapot", 2), "image/jpeg")})
    assert response.status_code == 202
    status_url = response.json()["status_url"]
    assert response.headers["location"] == status_url
    deadline = time.monotonic() + 30
    while (body := client.get(status_url).json())["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert body["matches"][0]["work_id"] == work["id"]


def test_reregistering_same_bytes_returns_existing_work(client):
    first = register(client, "vase")
    files = [("images", (f"again-{i}.jpg", photo_bytes("vase", i), "image/jpeg")) for i in (1, 0)]
    again = client.post("/sources", files=files, data={"title": "vase again", "rights_holder": "studio"})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert client.get("/sources", params={"with_count": True}).json()["count"] == 1
    other_holder = client.post("/sources", files=files, data={"title": "vase", "rights_holder": "other"})
    assert other_holder.status_code == 201


def test_readiness_needs_a_worker(client, start_worker):
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.headers["content-type"] == "application/problem+json"
    start_worker()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["workers"][0]["index_size"] == 0


def test_dedicated_workers_serve_each_queue_and_readiness_waits_for_both(client, start_worker):
    """The default launch (scripts/stack.sh): an embedding worker beside a dedicated attribution worker.
    Until both queues have a live worker the stack is not ready, and says which queue has none."""
    embedder = start_worker(queues="embed")
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["queues"] == "no live worker serves the attribute queue"
    work = register(client, "teapot")
    wait_searchable(client, [work["id"]])  # the embedding worker alone embeds registrations
    attributor = start_worker(queues="attribute")
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert sorted(w["queues"] for w in ready.json()["workers"]) == [["attribute"], ["embed"]]
    assert attribute(client, photo_bytes("teapot", 2))["matches"][0]["work_id"] == work["id"]
    # The import worker's decode threads give way on shared cores (ATTRIB_EMBED_WORKER_NICE); its main
    # thread (the forward pass) and every thread of the attribution worker keep their priority.
    nice, base = Settings.model_fields["embed_worker_nice"].default, os.nice(0)
    embedder_threads = thread_niceness(embedder.process.pid)
    assert nice > 0 and embedder_threads[embedder.process.pid] == base
    assert set(embedder_threads.values()) == {base, base + nice}
    assert set(thread_niceness(attributor.process.pid).values()) == {base}


def thread_niceness(pid: int) -> dict[int, int]:
    """Thread id -> nice value, from field 19 of /proc/<pid>/task/<tid>/stat, counted after the thread
    name's closing parenthesis (a name may hold spaces)."""
    return {int(task.name): int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
            for task in Path(f"/proc/{pid}/task").iterdir()}


def test_identical_queries_keep_their_own_files_until_done(client, start_worker, service_env):
    """Found by the soak run: query files were shared by content hash, so a finished job deleted the
    image of a queued job with the same bytes. Now each job has its own file, removed when it ends."""
    from pathlib import Path
    queries = Path(service_env["ATTRIB_DATA_DIR"]) / "storage" / "queries"
    work = register(client, "clock")
    submitted = [client.post("/attribute", files={"image": ("q.jpg", photo_bytes("clock", 2), "image/jpeg")}).json()
                 for _ in range(3)]
    assert len(list(queries.rglob("*.jpg"))) == 3
    start_worker()
    wait_searchable(client, [work["id"]])
    deadline = time.monotonic() + 60
    while {client.get(j["status_url"]).json()["status"] for j in submitted} != {"done"}:
        assert time.monotonic() < deadline, [client.get(j["status_url"]).json() for j in submitted]
        time.sleep(0.2)
    assert list(queries.rglob("*.jpg")) == []

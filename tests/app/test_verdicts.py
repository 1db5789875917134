"""Verdicts as data: a reviewer scope that reads jobs and judges matches and nothing else; each verdict
stores the work, the kind, the reviewer and time, a copy of the query's embedding, and the query image
only when its client allowed training use. With a real worker, the job row keeps the query embedding."""
import uuid

import numpy as np
import pytest
from sqlalchemy import select

from common.db.models import AttributionJob, Verdict
from common.db.session import new_session
from tests.app.review_helpers import ENCODER, finish_job, register, submit
from tests.conftest import auth
from tests.factories import photo_bytes


@pytest.fixture
def judged(anonymous_client, make_key):
    """Two works, one finished job of an attributor matching both, and a reviewer key."""
    acme = auth(make_key("registrar", "ACME"))
    works = [register(anonymous_client, acme, s) for s in ("dog", "cat")]
    attributor, reviewer = auth(make_key("attributor")), auth(make_key("reviewer"))
    job = submit(anonymous_client, attributor)
    vector = finish_job(job["id"], works)
    return {"works": works, "job": job, "vector": vector, "attributor": attributor, "reviewer": reviewer,
            "registrar": acme}


def post(client, judged, headers, **body):
    return client.post(f"/attribute/{judged['job']['id']}/verdicts", headers=headers, json=body)


def test_reviewer_confirms_and_the_verdict_keeps_the_embedding(anonymous_client, judged):
    dog, cat = (w["id"] for w in judged["works"])
    created = post(anonymous_client, judged, judged["reviewer"], work_id=dog, verdict="confirm")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["work_id"], body["verdict"], body["encoder_id"]) == (dog, "confirm", ENCODER)
    assert body["query_image_kept"] is False
    assert post(anonymous_client, judged, judged["reviewer"], work_id=cat, verdict="reject").status_code == 201
    with new_session() as session:
        rows = list(session.scalars(select(Verdict).order_by(Verdict.id)))
    assert [r.verdict.value for r in rows] == ["confirm", "reject"]
    np.testing.assert_array_equal(np.frombuffer(rows[0].query_vector, np.float32), judged["vector"])
    assert rows[0].query_storage_key is None and rows[0].created_at is not None
    listed = anonymous_client.get(f"/attribute/{judged['job']['id']}/verdicts", headers=judged["attributor"])
    assert [v["verdict"] for v in listed.json()] == ["confirm", "reject"]


def test_changing_ones_mind_replaces_the_verdict(anonymous_client, judged):
    dog = judged["works"][0]["id"]
    post(anonymous_client, judged, judged["reviewer"], work_id=dog, verdict="confirm")
    post(anonymous_client, judged, judged["reviewer"], work_id=dog, verdict="reject")
    listed = anonymous_client.get(f"/attribute/{judged['job']['id']}/verdicts", headers=judged["reviewer"]).json()
    assert [v["verdict"] for v in listed] == ["reject"]


def test_reviewer_scope_reads_jobs_and_judges_nothing_else(anonymous_client, judged):
    reviewer = judged["reviewer"]
    assert anonymous_client.get(f"/attribute/{judged['job']['id']}", headers=reviewer).status_code == 200
    assert anonymous_client.get("/sources", headers=reviewer).status_code == 403
    assert submit_status(anonymous_client, reviewer) == 403
    assert anonymous_client.get("/keys", headers=reviewer).status_code == 403
    dog = judged["works"][0]["id"]
    for headers in (judged["attributor"], judged["registrar"]):
        assert post(anonymous_client, judged, headers, work_id=dog, verdict="confirm").status_code == 403


def submit_status(client, headers) -> int:
    return client.post("/attribute", headers=headers,
                       files={"image": ("q.jpg", photo_bytes("dog", 1), "image/jpeg")}).status_code


def test_bad_verdicts_are_clear_problems(anonymous_client, judged, make_key):
    reviewer, dog = judged["reviewer"], judged["works"][0]["id"]
    cases = [({"verdict": "confirm"}, 422), ({"verdict": "none_of_these", "work_id": dog}, 422),
             ({"verdict": "maybe", "work_id": dog}, 422), ({"verdict": "confirm", "work_id": str(uuid.uuid4())}, 422)]
    for body, expected in cases:
        response = post(anonymous_client, judged, reviewer, **body)
        assert response.status_code == expected, body
        assert response.headers["content-type"] == "application/problem+json"
    assert post(anonymous_client, judged, reviewer, verdict="none_of_these").status_code == 201
    queued = submit(anonymous_client, judged["attributor"])
    refused = anonymous_client.post(f"/attribute/{queued['id']}/verdicts", headers=reviewer,
                                    json={"verdict": "none_of_these"})
    assert refused.status_code == 409 and "queued" in refused.json()["detail"]
    missing = anonymous_client.post(f"/attribute/{uuid.uuid4()}/verdicts", headers=reviewer,
                                    json={"verdict": "none_of_these"})
    assert missing.status_code == 404


def test_query_image_kept_only_when_client_allowed_training(anonymous_client, make_key, monkeypatch):
    monkeypatch.setenv("ATTRIB_COLLECT_QUERIES_FOR_TRAINING", "true")
    from tests.conftest import clear_cached_config
    clear_cached_config()
    work = register(anonymous_client, auth(make_key("registrar", "ACME")))
    attributor, reviewer = auth(make_key("attributor")), auth(make_key("reviewer"))
    kept, private = (submit(anonymous_client, attributor, allow_training=flag) for flag in ("true", "false"))
    for job in (kept, private):
        finish_job(job["id"], [work])
    bodies = [anonymous_client.post(f"/attribute/{job['id']}/verdicts", headers=reviewer,
                                    json={"verdict": "confirm", "work_id": work["id"]}).json()
              for job in (kept, private)]
    assert [b["query_image_kept"] for b in bodies] == [True, False]
    with new_session() as session:
        kept = session.scalar(select(Verdict).where(Verdict.job_id == uuid.UUID(kept["id"])))
    assert kept.query_storage_key.startswith("verdicts/")  # its own copy: job retention cannot remove it


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_worker_keeps_the_query_embedding_for_verdicts(anonymous_client, make_key, start_worker):
    from tests.app.test_end_to_end import wait_searchable
    start_worker()
    admin, reviewer = auth(make_key("admin")), auth(make_key("reviewer"))
    work = register(anonymous_client, admin, "teapot", rights_holder="S")
    anonymous_client.headers.update(admin)
    wait_searchable(anonymous_client, [work["id"]])
    done = anonymous_client.post("/attribute", params={"wait": 30},
                                 files={"image": ("q.jpg", photo_bytes("teapot", 1), "image/jpeg")}).json()
    assert done["status"] == "done" and done["matches"][0]["work_id"] == work["id"]
    with new_session() as session:
        job = session.get(AttributionJob, uuid.UUID(done["id"]))
        vector = np.frombuffer(job.query_vector, np.float32)
    assert vector.shape == (1280,) and abs(np.linalg.norm(vector) - 1) < 1e-4
    verdict = anonymous_client.post(f"/attribute/{done['id']}/verdicts", headers=reviewer,
                                    json={"verdict": "confirm", "work_id": work["id"]})
    assert verdict.status_code == 201 and verdict.json()["encoder_id"] == done["encoder_id"]


def test_retention_removes_the_query_thumbnail_and_keeps_verdicts(anonymous_client, judged, service_env, monkeypatch):
    """Evidence goes with its job; labels (and a kept training image, copied) stay."""
    from datetime import datetime, timedelta, timezone

    from common.retention import sweep_expired_jobs
    from common.storage import LocalStorage
    from common.thumbnails import query_thumbnail_key
    storage = LocalStorage(service_env["ATTRIB_DATA_DIR"] + "/storage")
    job_id = judged["job"]["id"]
    assert post(anonymous_client, judged, judged["reviewer"], work_id=judged["works"][0]["id"],
                verdict="confirm").status_code == 201
    assert storage.exists(query_thumbnail_key(job_id))
    with new_session() as session:
        assert sweep_expired_jobs(session, storage, retention_days=1,
                                  now=datetime.now(timezone.utc) + timedelta(days=2)) == 1
        verdict = session.scalar(select(Verdict))
    assert not storage.exists(query_thumbnail_key(job_id))
    assert verdict is not None and verdict.job_id is None and verdict.query_vector

"""GET /attribute: a key's own jobs (admins: everyone's), filtered, in cursor pages, and exported as
CSV; another key's jobs never appear, whatever the filters."""
import csv
import io
import uuid

import pytest

from common.db.models import AttributionJob, JobStatus, Match
from common.db.session import new_session
from tests.conftest import auth
from tests.factories import photo_bytes


def submit(client, headers, subject="dog"):
    response = client.post("/v1/attribute", headers=headers,
                           files={"image": ("q.jpg", photo_bytes(subject, 1), "image/jpeg")})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def finish(job_id: str, work_id: str, title_share: float = 0.6) -> None:
    """What a worker writes when a job is done (rows only; the worker itself is tested elsewhere)."""
    with new_session() as session:
        job = session.get(AttributionJob, uuid.UUID(job_id))
        job.status, job.encoder_id, job.index_id, job.unattributed = JobStatus.done, "enc@1", "idx-1", 1 - title_share
        job.matches = [Match(rank=1, work_id=uuid.UUID(work_id), score=0.9, share=title_share)]
        session.commit()


@pytest.fixture
def jobs(anonymous_client, make_key):
    first, second = auth(make_key("attributor", name="first")), auth(make_key("attributor", name="second"))
    admin = auth(make_key("admin"))
    work = anonymous_client.post("/v1/sources", headers=admin, data={"title": "=HYPERLINK(\"http://x\")",
                                                                      "rights_holder": "ACME"},
                                 files=[("images", ("a.jpg", photo_bytes("dog", 0), "image/jpeg"))]).json()
    mine = [submit(anonymous_client, first) for _ in range(3)]
    theirs = [submit(anonymous_client, second) for _ in range(2)]
    finish(mine[0], work["id"])
    return {"first": first, "second": second, "admin": admin, "mine": mine, "theirs": theirs, "work": work}


def listed(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["data"]]


def test_keys_list_only_their_own_jobs_newest_first(anonymous_client, jobs):
    get = anonymous_client.get
    assert listed(get("/v1/attribute", headers=jobs["first"])) == jobs["mine"][::-1]
    assert listed(get("/v1/attribute", headers=jobs["second"])) == jobs["theirs"][::-1]
    assert set(listed(get("/v1/attribute", headers=jobs["admin"]))) == set(jobs["mine"] + jobs["theirs"])


def test_filters_never_reach_another_keys_jobs(anonymous_client, jobs, make_key):
    get, second = anonymous_client.get, jobs["second"]
    assert listed(get("/v1/attribute", headers=second, params={"status": "done"})) == []
    first_key_id = _key_id_of(jobs["mine"][0])
    assert get("/v1/attribute", headers=second, params={"key_id": first_key_id}).status_code == 403
    assert get("/v1/attribute", headers=second, params={"format": "csv", "key_id": first_key_id}).status_code == 403
    exported = _csv(get("/v1/attribute", headers=second, params={"format": "csv"}))
    assert {row["job_id"] for row in exported} == set(jobs["theirs"])
    # Admins may ask for one key's jobs.
    assert set(listed(get("/v1/attribute", headers=jobs["admin"], params={"key_id": first_key_id}))) == set(jobs["mine"])
    # Reviewers read every job, so they list them all (a review queue: `status=done`).
    reviewer = auth(make_key("reviewer"))
    assert listed(get("/v1/attribute", headers=reviewer, params={"status": "done"})) == [jobs["mine"][0]]
    assert set(listed(get("/v1/attribute", headers=reviewer))) == set(jobs["mine"] + jobs["theirs"])
    # Registrars have no jobs to list.
    assert get("/v1/attribute", headers=auth(make_key("registrar", "ACME"))).status_code == 403


def test_status_created_range_and_cursor(anonymous_client, jobs):
    get, first = anonymous_client.get, jobs["first"]
    done = get("/v1/attribute", headers=first, params={"status": "done"}).json()["data"]
    assert [j["id"] for j in done] == [jobs["mine"][0]] and done[0]["matches"][0]["work_id"] == jobs["work"]["id"]
    assert listed(get("/v1/attribute", headers=first, params={"created_after": "2100-01-01T00:00:00Z"})) == []
    pages, cursor = [], None
    while True:
        body = get("/v1/attribute", headers=first, params={"limit": 2} | ({"cursor": cursor} if cursor else {})).json()
        pages.append([j["id"] for j in body["data"]])
        if (cursor := body["next_cursor"]) is None:
            break
    assert pages == [jobs["mine"][:0:-1], [jobs["mine"][0]]]
    assert get("/v1/attribute", headers=first, params={"cursor": "x" * 20}).status_code == 422
    assert get("/v1/attribute", headers=first, params={"format": "xml"}).status_code == 422


def test_csv_export_one_row_per_match_with_formulas_defused(anonymous_client, jobs):
    response = anonymous_client.get("/v1/attribute", headers=jobs["first"], params={"format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = _csv(response)
    assert [r["job_id"] for r in rows] == jobs["mine"][::-1]
    done = rows[-1]
    assert (done["status"], done["rank"], done["work_id"], done["share"]) == ("done", "1", jobs["work"]["id"], "0.6")
    # A title chosen by a rights holder must not run as a formula in the attributor's spreadsheet.
    assert done["title"] == "'=HYPERLINK(\"http://x\")"
    assert rows[0]["status"] == "queued" and rows[0]["work_id"] == ""


def _csv(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


def _key_id_of(job_id: str) -> str:
    with new_session() as session:
        return str(session.get(AttributionJob, uuid.UUID(job_id)).client_key_id)

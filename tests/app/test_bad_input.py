"""Bad uploads get a clear 4xx problem+json, and nothing already stored changes."""
import pytest
from sqlalchemy import func, select

from common.db.models import AttributionJob, SourceImage, Work
from common.db.session import new_session
from tests.factories import huge_png, photo_bytes, tiny_png, truncated_jpeg

BAD_FILES = {
    "empty": (b"", 422, "empty"),
    "text renamed .jpg": (b"just some text, not an image\n", 422, "not_an_image"),
    "truncated jpeg": (truncated_jpeg(), 422, "corrupt"),
    "1x1 image": (tiny_png(), 422, "too_small"),
    "huge dimensions": (huge_png(), 413, "too_many_pixels"),
    "unsupported format": (b"%PDF-1.4\n" + b"0" * 100, 422, "not_an_image"),
}


def stored_state(data_dir) -> tuple:
    with new_session() as session:
        counts = tuple(session.scalar(select(func.count()).select_from(t)) for t in (Work, SourceImage, AttributionJob))
    files = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*") if p.is_file() and "storage" in p.parts)
    return counts, files


@pytest.fixture
def registered(client, service_env):
    files = [("images", ("dog.jpg", photo_bytes("dog", 0), "image/jpeg"))]
    response = client.post("/sources", files=files, data={"title": "dog", "rights_holder": "studio"})
    assert response.status_code == 201
    from pathlib import Path
    return stored_state(Path(service_env["ATTRIB_DATA_DIR"]))


def assert_problem(response, status: int, reason: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if reason:
        assert body["reason"] == reason
    return body


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_source_upload_is_refused_and_changes_nothing(client, service_env, registered, name):
    from pathlib import Path
    data, status, reason = BAD_FILES[name]
    files = [("images", ("ok.jpg", photo_bytes("cat", 0), "image/jpeg")), ("images", ("bad.jpg", data, "image/jpeg"))]
    response = client.post("/sources", files=files, data={"title": "x", "rights_holder": "studio"})
    assert_problem(response, status, reason)
    assert stored_state(Path(service_env["ATTRIB_DATA_DIR"])) == registered


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_query_is_refused_and_changes_nothing(client, service_env, registered, name):
    from pathlib import Path
    data, status, reason = BAD_FILES[name]
    response = client.post("/attribute", files={"image": ("q.jpg", data, "image/jpeg")})
    assert_problem(response, status, reason)
    assert stored_state(Path(service_env["ATTRIB_DATA_DIR"])) == registered


def test_missing_fields_and_bad_parameters(client):
    assert_problem(client.post("/sources", data={"title": "x"}), 422)
    assert_problem(client.post("/attribute"), 422)
    image = {"image": ("q.jpg", photo_bytes("dog", 0), "image/jpeg")}
    assert_problem(client.post("/attribute", params={"top_k": 0}, files=image), 422)
    assert_problem(client.post("/attribute", params={"wait": -1}, files=image), 422)
    assert_problem(client.get("/sources", params={"limit": 1000}), 422)


def test_unknown_ids(client):
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_problem(client.get(f"/sources/{unknown}"), 404)
    assert_problem(client.delete(f"/sources/{unknown}"), 404)
    assert_problem(client.get(f"/attribute/{unknown}"), 404)
    assert_problem(client.get("/attribute/not-a-uuid"), 422)


def test_too_many_bytes(client, monkeypatch):
    monkeypatch.setenv("ATTRIB_MAX_UPLOAD_BYTES", "1000")
    from tests.conftest import clear_cached_config
    clear_cached_config()
    response = client.post("/attribute", files={"image": ("q.jpg", photo_bytes("dog", 0), "image/jpeg")})
    assert_problem(response, 413, "too_large")

"""Keys and scopes: every endpoint but the health checks needs a key; registrars see only their own
rights holder's works, attributors only their own jobs; keys are stored hashed; limits per key."""
import subprocess
import sys

import pytest
from redis import Redis
from sqlalchemy import text

from common.apikeys import announce_revocation, authenticate, revoke_key
from common.db.session import new_session
from tests.conftest import REDIS_URL, REPO, auth
from tests.factories import photo_bytes

OPEN_PATHS = {"/healthz", "/readyz", "/problems", "/problems/{slug}"}


def register(client, headers, subject="dog", rights_holder=None):
    data = {"title": subject} | ({"rights_holder": rights_holder} if rights_holder else {})
    return client.post("/sources", headers=headers, data=data,
                       files=[("images", ("a.jpg", photo_bytes(subject, 0), "image/jpeg"))])


def submit(client, headers, subject="dog"):
    return client.post("/attribute", headers=headers, files={"image": ("q.jpg", photo_bytes(subject, 1), "image/jpeg")})


def test_every_endpoint_but_health_needs_a_key(anonymous_client):
    schema = anonymous_client.get("/openapi.json").json()
    checked = 0
    for path, operations in schema["paths"].items():
        for method in operations:
            url = path.replace("{work_id}", "00000000-0000-4000-8000-000000000000") \
                      .replace("{job_id}", "00000000-0000-4000-8000-000000000000") \
                      .replace("{key_id}", "00000000-0000-4000-8000-000000000000") \
                      .replace("{slug}", "not-found")
            response = anonymous_client.request(method.upper(), url)
            if path in OPEN_PATHS:
                assert response.status_code != 401
            else:
                assert response.status_code == 401, (method, path)
                assert response.headers["www-authenticate"] == "Bearer"
                checked += 1
    assert checked >= 8
    assert anonymous_client.get("/metrics").status_code == 401


def test_unknown_and_revoked_keys_are_refused(client, anonymous_client, make_key):
    assert anonymous_client.get("/sources", headers=auth("atk_not-a-real-key")).status_code == 401
    created = client.post("/keys", json={"name": "temp", "scope": "attributor"}).json()
    assert anonymous_client.get("/attribute/00000000-0000-4000-8000-000000000000",
                                headers=auth(created["secret"])).status_code == 404
    assert client.delete(f"/keys/{created['id']}").status_code == 204
    assert anonymous_client.get("/attribute/00000000-0000-4000-8000-000000000000",
                                headers=auth(created["secret"])).status_code == 401


def test_registrars_only_touch_their_own_rights_holder(anonymous_client, make_key):
    acme, other = auth(make_key("registrar", "ACME")), auth(make_key("registrar", "Other"))
    work = register(anonymous_client, acme).json()
    assert work["rights_holder"] == "ACME"
    assert register(anonymous_client, acme, "cat", rights_holder="Other").status_code == 403
    assert anonymous_client.get(f"/sources/{work['id']}", headers=other).status_code == 404
    assert anonymous_client.delete(f"/sources/{work['id']}", headers=other).status_code == 404
    assert anonymous_client.get("/sources", headers=other).json()["data"] == []
    # Naming another rights holder is refused, not silently replaced by the key's own.
    assert anonymous_client.get("/sources", headers=acme, params={"rights_holder": "Other"}).status_code == 403
    assert len(anonymous_client.get("/sources", headers=acme, params={"rights_holder": "ACME"}).json()["data"]) == 1
    assert anonymous_client.get(f"/sources/{work['id']}", headers=acme).status_code == 200
    assert submit(anonymous_client, acme).status_code == 403


def test_attributors_only_read_their_own_jobs(anonymous_client, make_key):
    first, second = auth(make_key("attributor")), auth(make_key("attributor"))
    job = submit(anonymous_client, first).json()
    assert anonymous_client.get(f"/attribute/{job['id']}", headers=first).status_code == 200
    assert anonymous_client.get(f"/attribute/{job['id']}", headers=second).status_code == 404
    assert register(anonymous_client, first).status_code == 403
    assert anonymous_client.get("/sources", headers=first).status_code == 403
    assert anonymous_client.post("/keys", headers=first, json={"name": "x", "scope": "admin"}).status_code == 403


def test_secrets_are_shown_once_and_stored_hashed(client):
    created = client.post("/keys", json={"name": "r", "scope": "registrar", "rights_holder": "ACME"})
    assert created.status_code == 201
    secret = created.json()["secret"]
    listed = client.get("/keys").text
    assert secret not in listed and "secret" not in listed
    with new_session() as session:
        dump = " ".join(str(v) for row in session.execute(text("SELECT * FROM api_keys")) for v in row)
    assert secret not in dump
    assert client.post("/keys", json={"name": "r", "scope": "registrar"}).status_code == 422


def test_cli_creates_lists_and_revokes(service_env, anonymous_client):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "common.apikeys", *args], cwd=REPO, env=service_env | {
            "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True).stdout
    secret = cli("create", "--name", "ops", "--scope", "admin", "--quiet").strip()
    assert anonymous_client.get("/keys", headers=auth(secret)).status_code == 200
    key_id = cli("list").split()[0]
    cli("revoke", key_id)
    assert anonymous_client.get("/keys", headers=auth(secret)).status_code == 401


def test_rate_limit_per_key(anonymous_client, make_key, monkeypatch):
    monkeypatch.setenv("ATTRIB_RATE_LIMIT_REQUESTS", "3")
    monkeypatch.setenv("ATTRIB_RATE_LIMIT_WINDOW_S", "3600")  # fixed windows: 60 s ones ended mid-test now and then
    from tests.conftest import clear_cached_config
    clear_cached_config()
    limited, fresh = auth(make_key("admin")), auth(make_key("admin"))
    statuses = [anonymous_client.get("/sources", headers=limited).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = anonymous_client.get("/sources", headers=limited)
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 3600
    assert anonymous_client.get("/sources", headers=fresh).status_code == 200


@pytest.mark.parametrize("path", ["/sources", "/attribute"])
def test_idempotency_key_replays_the_first_response(client, path):
    files = {"images" if path == "/sources" else "image": ("a.jpg", photo_bytes("teapot", 0), "image/jpeg")}
    data = {"title": "teapot", "rights_holder": "S"} if path == "/sources" else None
    headers = {"Idempotency-Key": "retry-123"}
    first = client.post(path, headers=headers, files=files, data=data)
    second = client.post(path, headers=headers, files=files, data=data)
    assert first.status_code in (201, 202) and second.status_code == first.status_code
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    other = client.post(path, headers={"Idempotency-Key": "another"}, files=files, data=data)
    if path == "/attribute":
        assert other.json()["id"] != first.json()["id"]
    with new_session() as session:
        table = "works" if path == "/sources" else "attribution_jobs"
        assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == (1 if path == "/sources" else 2)


def test_failed_request_with_idempotency_key_can_be_corrected(client):
    headers = {"Idempotency-Key": "fix-me"}
    bad = client.post("/attribute", headers=headers, files={"image": ("a.jpg", b"nope", "image/jpeg")})
    assert bad.status_code == 422
    good = client.post("/attribute", headers=headers, files={"image": ("a.jpg", photo_bytes("dog", 0), "image/jpeg")})
    assert good.status_code == 202


def test_idempotency_records_are_per_key_and_die_with_the_key(anonymous_client, make_key):
    first, second = auth(make_key("attributor")), auth(make_key("attributor"))
    image = {"image": ("q.jpg", photo_bytes("dog", 0), "image/jpeg")}
    same = {"Idempotency-Key": "shared-value"}
    a = anonymous_client.post("/attribute", headers=first | same, files=image).json()
    b = anonymous_client.post("/attribute", headers=second | same, files=image).json()
    assert a["id"] != b["id"]  # another caller's identical Idempotency-Key is a different request
    with new_session() as session:
        key = authenticate(session, secret=first["Authorization"].removeprefix("Bearer "))
        revoke_key(session, key_id=key.id)
        session.commit()
    announce_revocation(Redis.from_url(REDIS_URL))  # what the API and the CLI do after revoking
    replay = anonymous_client.post("/attribute", headers=first | same, files=image)
    assert replay.status_code == 401 and "idempotent-replayed" not in replay.headers


def test_oversized_request_is_refused_from_its_length(client, monkeypatch):
    monkeypatch.setenv("ATTRIB_MAX_REQUEST_BYTES", "5000")
    from tests.conftest import clear_cached_config
    clear_cached_config()
    response = client.post("/attribute", files={"image": ("q.jpg", photo_bytes("dog", 0), "image/jpeg")})
    assert response.status_code == 413 and response.json()["reason"] == "too_large"
    assert response.headers["content-type"] == "application/problem+json"

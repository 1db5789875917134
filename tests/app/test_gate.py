"""Issue 7 (#5-#8, #10, #11): the key is checked before the body is read; body limits hold for every
transfer encoding; requests without a valid key are metered per address, replays per key;
idempotency never stores a secret; a value the database refuses is a 422 that writes nothing and
frees the Idempotency-Key slot."""
import asyncio
import uuid

import pytest

from common.settings import get_settings
from tests.app.test_bad_input import stored_state
from tests.conftest import auth
from tests.factories import photo_bytes

MULTIPART = b"multipart/form-data; boundary=x"
PART_HEADER = b'--x\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'


def call_asgi(app, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]):
    """Drive the ASGI app directly: returns (status, how many body chunks it read)."""
    consumed, sent = [], []

    async def receive():
        if len(consumed) < len(chunks):
            consumed.append(chunks[len(consumed)])
            return {"type": "http.request", "body": consumed[-1], "more_body": len(consumed) < len(chunks)}
        await asyncio.sleep(3600)  # the client has nothing more to send

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("198.51.100.7", 5000), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), len(consumed)


@pytest.fixture
def app(service_env):
    from app.main import create_app
    return create_app()


def test_anonymous_and_unknown_keys_are_refused_before_the_body_is_read(app):
    chunks = [PART_HEADER] + [b"a" * 65536] * 50
    for headers in ([], [(b"authorization", b"Bearer atk_unknown")]):
        status, consumed = call_asgi(app, "POST", "/sources", [(b"content-type", MULTIPART), *headers], chunks)
        assert (status, consumed) == (401, 0)


@pytest.mark.parametrize("encoding", [b"chunked", b"Chunked", b"gzip, Chunked", b"identity"])
def test_bodies_are_counted_while_they_stream_whatever_the_transfer_encoding(app, make_key, monkeypatch, encoding):
    monkeypatch.setenv("ATTRIB_MAX_REQUEST_BYTES", str(256 * 1024))
    get_settings.cache_clear()
    headers = [(b"content-type", MULTIPART), (b"transfer-encoding", encoding),
               (b"authorization", f"Bearer {make_key('admin')}".encode())]
    status, consumed = call_asgi(app, "POST", "/sources", headers, [PART_HEADER] + [b"a" * 65536] * 50)
    assert status == 413 and consumed <= 6  # stopped just past the limit, not after 3.2 MB


# Rate limits count in fixed windows: a test whose requests straddled a window's end would see its count
# restart (it did, once in many runs, with the default 60 s). Windows of 11 days make that all but impossible.
LONG_WINDOW_S = "1000000"


def test_requests_without_a_valid_key_are_metered_per_address(anonymous_client, monkeypatch, redis_client):
    monkeypatch.setenv("ATTRIB_ANONYMOUS_RATE_LIMIT_REQUESTS", "5")
    monkeypatch.setenv("ATTRIB_RATE_LIMIT_WINDOW_S", LONG_WINDOW_S)
    get_settings.cache_clear()
    for counter in redis_client.scan_iter("attrib:rate:ip:testclient:*"):  # other tests' requests
        redis_client.delete(counter)
    statuses = [anonymous_client.get("/sources", headers=auth(f"atk_guess{i}")).status_code for i in range(8)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 3
    assert anonymous_client.get("/healthz").status_code == 200  # health checks are never metered
    # Guessing keys against a public page (where the console checks a key) is metered the same way.
    guesses = [anonymous_client.get("/console/session", headers=auth(f"atk_more{i}")).status_code for i in range(2)]
    assert guesses == [429, 429]


def test_idempotent_replays_count_against_the_key(anonymous_client, make_key, monkeypatch):
    monkeypatch.setenv("ATTRIB_RATE_LIMIT_REQUESTS", "3")
    monkeypatch.setenv("ATTRIB_RATE_LIMIT_WINDOW_S", LONG_WINDOW_S)
    get_settings.cache_clear()
    headers = auth(make_key("admin")) | {"Idempotency-Key": "same"}
    body = {"name": "n", "scope": "attributor"}
    statuses = [anonymous_client.post("/keys", headers=headers, json={**body, "name": f"n{i}"}).status_code
                for i in range(5)]
    assert statuses[3:] == [429, 429]


def test_key_secrets_are_never_kept_for_replays(client, redis_client):
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = client.post("/keys", headers=headers, json={"name": "n", "scope": "attributor"})
    assert first.status_code == 201 and first.headers["cache-control"] == "no-store"
    secret = first.json()["secret"]
    assert not any(secret.encode() in (redis_client.get(k) or b"") for k in redis_client.scan_iter("attrib:idem:*"))
    again = client.post("/keys", headers=headers, json={"name": "n", "scope": "attributor"})
    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    assert again.json()["secret"] != secret


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_nul_characters_are_bad_input_that_writes_nothing_and_frees_the_idempotency_slot(client, service_env):
    from pathlib import Path
    data_dir = Path(service_env["ATTRIB_DATA_DIR"])
    before = stored_state(data_dir)
    image = [("images", ("a.jpg", photo_bytes("dog", 0), "image/jpeg"))]
    headers = {"Idempotency-Key": "nul"}
    for field in ("title", "licence", "rights_holder", "external_ref"):
        form = {"title": "t", "rights_holder": "studio", field: "bad\x00value"}
        response = client.post("/sources", headers=headers, data=form, files=image)
        assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    for name in (b"bad\\u0000", b"bad\\ud800"):  # JSON escapes: NUL, an unpaired surrogate
        response = client.post("/keys", headers=headers | {"content-type": "application/json"},
                               content=b'{"name": "' + name + b'", "scope": "attributor"}')
        assert response.status_code == 422, response.text
    assert client.get("/sources", params={"rights_holder": "a\x00"}).status_code == 422
    assert stored_state(data_dir) == before
    fixed = client.post("/sources", headers=headers, data={"title": "t", "rights_holder": "studio"}, files=image)
    assert fixed.status_code == 201  # not 409: the refused attempts released the slot

"""Issue 7 (#12-#14): what the API tells strangers. Anonymous /readyz says ready or not only; the
Host header never reaches a link the API hands out; Pillow's own wording stays out of answers."""
import json

import pytest

from common.jobs import heartbeat_key
from common.settings import get_settings
from tests.conftest import auth
from tests.corpus.make_corpus import png_declaring
from tests.factories import photo_bytes


def test_anonymous_readiness_reveals_nothing(anonymous_client, make_key, service_env, redis_client):
    # A worker's heartbeat as worker/heartbeat.py writes it (a real worker takes ~20 s to start).
    beat = {"worker": "w1", "pid": 4242, "encoder_id": "enc", "index_id": "idx", "index_size": 0, "pair_id": None,
            "loaded_from": "/srv/attrib/var/artifacts/index"}
    redis_client.set(heartbeat_key(service_env["ATTRIB_QUEUE_NAME"], "w1"), json.dumps(beat), ex=60)
    anonymous = anonymous_client.get("/readyz")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ready"}
    admin = anonymous_client.get("/readyz", headers=auth(make_key("admin"))).json()
    worker = admin["workers"][0]
    assert {"pid", "encoder_id", "index_size", "loaded_from"} <= set(worker)
    assert admin["active_pair"] == {"id": None, "encoder_id": None, "workers_on_another_pair": []}


def test_an_embedding_only_worker_alone_is_not_a_loaded_index(anonymous_client, make_key, service_env, redis_client):
    beat = {"worker": "w2", "pid": 4243, "encoder_id": "enc", "index_id": None, "index_size": None, "index_type": None,
            "pair_id": None, "loaded_from": "no index: this worker only embeds", "queues": ["embed"]}
    redis_client.set(heartbeat_key(service_env["ATTRIB_QUEUE_NAME"], "w2"), json.dumps(beat), ex=60)
    not_ready = anonymous_client.get("/readyz", headers=auth(make_key("admin")))
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["worker_index"] == "no worker with a loaded index"


def test_anonymous_not_ready_gives_no_details(anonymous_client):
    not_ready = anonymous_client.get("/readyz")
    assert not_ready.status_code == 503 and "checks" not in not_ready.json()
    assert not_ready.json()["detail"] == "the service is not ready"


@pytest.mark.parametrize("base", [None, "https://attrib.example.org"])
def test_links_never_come_from_the_host_header(client, monkeypatch, base):
    if base:
        monkeypatch.setenv("ATTRIB_PUBLIC_BASE_URL", base)
        get_settings.cache_clear()
    response = client.post("/attribute", headers={"Host": "evil.example"},
                           files={"image": ("q.jpg", photo_bytes("dog", 1), "image/jpeg")})
    body = response.json()
    assert "evil" not in body["status_url"] and "evil" not in response.headers["location"]
    assert body["status_url"] == f"{base or ''}/v1/attribute/{body['id']}" == response.headers["location"]


def test_pillow_wording_never_leaks(client):
    response = client.post("/attribute", files={"image": ("bomb.png", png_declaring(100_000, 100_000), "image/png")})
    assert response.status_code == 413 and response.json()["reason"] == "too_many_pixels"
    assert "decompression bomb" not in response.text.lower() and "DOS" not in response.text

"""A client generated from our OpenAPI document by openapi-python-client (once per test session) talks
to a real server and worker: it creates a key, registers a work, attributes an image and parses
problem responses into their declared types."""
import importlib
import io
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import clear_cached_config
from tests.factories import photo_bytes

GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.fixture(scope="session")
def generated_client(tmp_path_factory):
    """Generate the package `attrib_client` from the served document and make it importable."""
    from app.main import create_app
    out = tmp_path_factory.mktemp("generated")
    (out / "openapi.json").write_text(json.dumps(create_app().openapi()))
    clear_cached_config()
    (out / "config.yaml").write_text("post_hooks: []\n")  # no formatter run: ruff need not be on PATH
    subprocess.run([str(GENERATOR), "generate", "--path", str(out / "openapi.json"), "--meta", "none",
                    "--output-path", str(out / "attrib_client"), "--config", str(out / "config.yaml")],
                   check=True, capture_output=True, timeout=120)
    sys.path.insert(0, str(out))
    yield importlib.import_module("attrib_client")
    sys.path.remove(str(out))


@pytest.fixture
def server_url(service_env):
    """The app under uvicorn on a free loopback port, so the client uses its own HTTP stack."""
    import uvicorn
    from app.main import create_app
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_generated_client_registers_attributes_and_reads_problems(generated_client, server_url, make_key,
                                                                  start_worker):
    from attrib_client import AuthenticatedClient
    from attrib_client.api.attribution import create_attribution, read_attributions
    from attrib_client.api.keys import create_api_key
    from attrib_client.api.models import read_models
    from attrib_client.api.sources import create_source, read_source, read_sources
    from attrib_client.models import (
        AttributionPublic, BodyCreateAttribution, BodyCreateSource, KeyCreate, KeyCreated, Problem, Scope,
        ValidationProblem, WorkPublic,
    )
    from attrib_client.types import File

    start_worker()
    admin = AuthenticatedClient(base_url=server_url, token=make_key("admin"), raise_on_unexpected_status=True)
    registrar_key = create_api_key.sync(client=admin, body=KeyCreate(name="acme", scope=Scope.REGISTRAR,
                                                                     rights_holder="ACME"))
    assert isinstance(registrar_key, KeyCreated)
    registrar = AuthenticatedClient(base_url=server_url, token=registrar_key.secret)
    attributor = AuthenticatedClient(base_url=server_url, token=make_key("attributor"))

    images = [File(payload=io.BytesIO(photo_bytes("teapot", i)), file_name=f"{i}.jpg", mime_type="image/jpeg")
              for i in (0, 1)]
    work = create_source.sync(client=registrar, body=BodyCreateSource(images=images, title="Teapot"),
                              idempotency_key="catalogue-1")
    assert isinstance(work, WorkPublic) and work.rights_holder == "ACME"
    deadline = time.monotonic() + 60
    while not read_source.sync(client=registrar, work_id=work.id).searchable:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    query = File(payload=io.BytesIO(photo_bytes("teapot", 0)), file_name="q.jpg", mime_type="image/jpeg")
    result = create_attribution.sync(client=attributor, body=BodyCreateAttribution(image=query), wait=30, top_k=3)
    assert isinstance(result, AttributionPublic) and result.status.value == "done"
    assert result.matches[0].work_id == work.id and result.encoder_id
    listed = read_attributions.sync(client=attributor)
    assert [job.id for job in listed.data] == [result.id]
    models = read_models.sync(client=attributor)
    assert models.workers[0].encoder_id == result.encoder_id

    missing = read_source.sync(client=registrar, work_id=result.id)
    assert isinstance(missing, Problem) and missing.status == 404 and missing.type_ == "/problems/not-found"
    invalid = read_sources.sync(client=registrar, limit=1000)
    assert isinstance(invalid, ValidationProblem) and invalid.errors[0].loc == ["query", "limit"]
    not_an_image = File(payload=io.BytesIO(b"hello"), file_name="x.jpg", mime_type="image/jpeg")
    refused = create_attribution.sync(client=attributor, body=BodyCreateAttribution(image=not_an_image))
    assert isinstance(refused, ValidationProblem) and refused.reason == "not_an_image"

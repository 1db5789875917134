"""A bounded schemathesis run over every operation of the OpenAPI schema, in process, with an admin
key: whatever the generated request, the answer is never a 5xx. No worker runs; jobs just queue."""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app.main import create_app
from tests.conftest import auth, clear_cached_config

# The app reads its settings per request (cached, cleared by the fixtures), so one app built at import
# serves every test's own deployment (schemathesis.pytest.from_fixture breaks on this pytest).
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@pytest.fixture
def admin_headers(service_env, make_key, monkeypatch):
    # `wait` may be up to 60 s and no worker will ever finish the job: keep each request short.
    monkeypatch.setenv("ATTRIB_MAX_WAIT_SECONDS", "0.1")
    clear_cached_config()
    return auth(make_key("admin"))


@schema.parametrize()
@settings(max_examples=15, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_server_error(case, admin_headers):
    if case.path == "/readyz":  # 503 "not ready" is its answer while no worker holds an index
        status = case.call(headers=dict(admin_headers)).status_code
        assert status < 500 or status == 503
        return
    case.call_and_validate(headers=dict(admin_headers), checks=[not_a_server_error])


@pytest.mark.parametrize("service_env", ["sqlite", "postgresql"], indirect=True)
def test_huge_offset_is_a_client_error(admin_headers):
    """Found by the fuzz run: offset=2**63 overflowed the database integer and answered 500."""
    from fastapi.testclient import TestClient
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        response = client.get("/sources", params={"offset": 2**63}, headers=admin_headers)
    assert response.status_code == 422, response.text

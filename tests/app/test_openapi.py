"""The OpenAPI document is valid, names its operations, declares every problem it can send with the
schema of what is really sent, and its headers and limits are the server's; problem types resolve;
/v1 and the unversioned aliases are one API; the docs pages load without a CDN."""
import jsonschema
import pytest
from openapi_spec_validator import validate

from app.problem_types import PROBLEM_TYPES
from tests.conftest import auth
from tests.factories import photo_bytes


@pytest.fixture
def schema(anonymous_client):
    return anonymous_client.get("/openapi.json").json()


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_document_validates_with_named_operations(schema):
    validate(schema)
    ids = [op["operationId"] for _, _, op in operations(schema)]
    assert len(ids) == len(set(ids))
    assert {"create_source", "read_sources", "update_source", "create_attribution", "read_attribution",
            "read_attributions", "read_models", "read_problem_type"} <= set(ids)
    assert all(path.startswith(("/v1/", "/problems", "/healthz", "/readyz")) for path in schema["paths"])
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    offset = next(p for p in schema["paths"]["/v1/sources"]["get"]["parameters"] if p["name"] == "offset")
    assert offset["deprecated"] is True


def test_every_problem_is_declared_as_problem_json(schema):
    for path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (path, method, status)
        if operation.get("security"):
            assert {"401", "403", "429", "503"} <= set(operation["responses"]), (path, method)
    responses = schema["paths"]["/v1/sources"]["post"]["responses"]
    assert {"409", "413", "415"} <= set(responses)
    assert responses["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "Location" in responses["201"]["headers"]
    assert "Location" in schema["paths"]["/v1/attribute"]["post"]["responses"]["202"]["headers"]
    assert "404" in schema["paths"]["/v1/sources/{work_id}"]["patch"]["responses"]
    parameters = {p["name"] for p in schema["paths"]["/v1/attribute"]["post"]["parameters"]}
    assert "Idempotency-Key" in parameters


def test_declared_422_schema_matches_what_is_sent(client, schema):
    sent = client.get("/v1/sources", params={"limit": 1000})
    assert sent.status_code == 422 and sent.headers["content-type"] == "application/problem+json"
    declared = schema["paths"]["/v1/sources"]["get"]["responses"]["422"]["content"]["application/problem+json"]
    resolver_schema = {**declared["schema"], "components": schema["components"]}
    jsonschema.validate(sent.json(), resolver_schema)
    assert isinstance(sent.json()["detail"], str) and sent.json()["errors"][0]["loc"] == ["query", "limit"]
    jsonschema.validate(declared["example"], resolver_schema)


def test_every_kind_of_422_matches_the_declared_schema(client, schema):
    """Found by the generated client: an image rejected with 422 had no `errors`, so the declared
    ValidationProblem could not parse it. Every 422 the server sends must fit that schema."""
    declared = {**schema["components"]["schemas"]["ValidationProblem"], "components": schema["components"]}
    sent = [client.post("/v1/attribute", files={"image": ("x.jpg", b"hello", "image/jpeg")}),
            client.post("/v1/sources", files=[("images", ("a.jpg", photo_bytes("dog", 0), "image/jpeg"))],
                        data={"title": "no rights holder"}),
            client.get("/v1/attribute", params={"cursor": "bm90IGEgY3Vyc29y"}),
            client.patch(f"/v1/sources/{'0' * 8}-0000-4000-8000-{'0' * 12}", json={"title": 3.5})]
    for response in sent:
        assert response.status_code == 422, response.text
        jsonschema.validate(response.json(), declared)


def test_wait_limit_is_the_servers(schema, service_env):
    from common.settings import get_settings
    wait = next(p for p in schema["paths"]["/v1/attribute"]["post"]["parameters"] if p["name"] == "wait")
    assert wait["schema"]["maximum"] == get_settings().max_wait_seconds == 30


def test_main_operations_have_examples(schema):
    components = schema["components"]["schemas"]
    assert components["WorkPublic"]["examples"][0]["title"] == "Blue teapot"
    assert components["AttributionPublic"]["examples"][0]["matches"][0]["rank"] == 1
    assert components["WorkUpdate"]["examples"]
    example_404 = schema["paths"]["/v1/sources/{work_id}"]["get"]["responses"]["404"]["content"]
    assert example_404["application/problem+json"]["example"]["status"] == 404


def test_every_problem_type_resolves(client):
    anonymous_client = client
    sent = {client.get(f"/v1/sources/{'0' * 8}-0000-4000-8000-{'0' * 12}").json()["type"],
            client.get("/v1/sources", params={"limit": 0}).json()["type"],
            client.get("/v1/sources", headers=auth("atk_unknown")).json()["type"]}
    assert sent == {"/problems/not-found", "/problems/invalid-request", "/problems/unauthorized"}
    for problem_type in PROBLEM_TYPES.values():
        page = anonymous_client.get(problem_type.uri)
        assert page.status_code == 200 and page.json()["status"] == problem_type.status
    html = anonymous_client.get("/problems/too-many-pixels", headers={"Accept": "text/html"})
    assert html.headers["content-type"].startswith("text/html") and "ATTRIB_MAX_IMAGE_PIXELS" in html.text
    assert anonymous_client.get("/problems/<script>").status_code == 404


def test_unversioned_paths_are_aliases_sharing_idempotency(client):
    files = [("images", ("a.jpg", photo_bytes("dog", 0), "image/jpeg"))]
    headers = {"Idempotency-Key": "import-42"}
    first = client.post("/v1/sources", files=files, data={"title": "dog", "rights_holder": "ACME"}, headers=headers)
    assert first.status_code == 201 and first.headers["location"].endswith(f"/v1/sources/{first.json()['id']}")
    files = [("images", ("b.jpg", photo_bytes("cat", 0), "image/jpeg"))]
    again = client.post("/sources", files=files, data={"title": "cat", "rights_holder": "ACME"}, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert client.get(f"/sources/{first.json()['id']}").json() == client.get(f"/v1/sources/{first.json()['id']}").json()
    assert len(client.get("/sources").json()["data"]) == 1


def test_docs_are_served_without_a_cdn(anonymous_client):
    for page in ("/docs", "/redoc"):
        body = anonymous_client.get(page).text
        assert "cdn." not in body and "fonts.googleapis" not in body and "/static/docs/" in body
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        response = anonymous_client.get(f"/static/docs/{asset}")
        assert response.status_code == 200 and len(response.content) > 10_000


def test_metrics_scope_scrapes_and_does_nothing_else(anonymous_client, make_key):
    scraper = auth(make_key("metrics"))
    metrics = anonymous_client.get("/metrics", headers=scraper)
    assert metrics.status_code == 200 and "attrib_http_requests_total" in metrics.text
    assert anonymous_client.get("/v1/sources", headers=scraper).status_code == 403
    assert anonymous_client.get("/v1/attribute", headers=scraper).status_code == 403
    assert anonymous_client.get("/metrics", headers=auth(make_key("attributor"))).status_code == 403

"""The OpenAPI document, made to generate working clients: every problem response is declared with
its media type and the schema of what is really sent (the 422 body is a string `detail` plus
`errors`, not FastAPI's array `detail`), the headers clients must handle are declared, and the
`wait` limit is the server's own."""
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.problem_types import type_for_status
from app.problems import PROBLEM_JSON
from common.settings import get_settings

_REF = "#/components/schemas/"
_PROBLEM = {
    "title": "Problem", "type": "object", "description": "RFC 9457 problem details; `type` resolves to a page.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "`/problems/<slug>`: GET it for an explanation"},
        "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
        "instance": {"type": "string", "description": "the request path"},
        "reason": {"type": "string", "description": "for rejected images: empty, not_an_image, unsupported_format, "
                                                    "corrupt, too_small, too_large, too_many_pixels, metadata_too_large"},
    },
    "additionalProperties": True,
}
_FIELD_ERROR = {"title": "FieldError", "type": "object", "required": ["loc", "msg"], "properties": {
    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
    "msg": {"type": "string"}}}
_VALIDATION_PROBLEM = {
    "title": "ValidationProblem", "type": "object", "description": "A 422 problem: `detail` in one line, "
    "`errors` one entry per invalid field.",
    "required": ["type", "title", "status", "detail", "errors"],
    "properties": {**_PROBLEM["properties"], "errors": {"type": "array", "items": {"$ref": _REF + "FieldError"}}},
    "additionalProperties": True,
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
_LOCATION = {"Location": {"description": "URL of the created resource (the job's status URL)",
                          "schema": {"type": "string"}}}
_REPLAYED = {"Idempotent-Replayed": {"description": "`true` when this is a stored answer to a repeated "
                                                    "Idempotency-Key", "schema": {"type": "string"}}}
_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                    "description": "repeat a POST safely: the first successful answer is replayed for 24 h "
                                   "(per API key; /v1 and unversioned paths share it)",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
_DESCRIPTIONS = {400: "malformed header (e.g. Idempotency-Key)", 401: "no API key, or an unknown or revoked one",
                 403: "the key's scope or tenant does not allow this", 404: "no such resource for this key",
                 409: "conflicts with what is stored, or the same Idempotency-Key is still running",
                 411: "Content-Length missing", 413: "request or image too large", 415: "unsupported image format",
                 422: "invalid parameters or fields", 429: "rate limit reached for this key",
                 503: "database, Redis or queue unavailable"}
_EXAMPLES = {404: {"type": "/problems/not-found", "title": "Unknown work", "status": 404,
                   "detail": "no work with id 6f1c1b52-3c1e-4d8a-9a57-0f6c2b8f5e11",
                   "instance": "/v1/sources/6f1c1b52-3c1e-4d8a-9a57-0f6c2b8f5e11"},
             422: {"type": "/problems/invalid-request", "title": "Invalid request parameters", "status": 422,
                   "detail": "query.limit: Input should be less than or equal to 100", "instance": "/v1/sources",
                   "errors": [{"loc": ["query", "limit"], "msg": "Input should be less than or equal to 100"}]}}
_LOCATION_OPERATIONS = {"create_source", "create_attribution"}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema
    app.openapi = openapi


def build_openapi(app: FastAPI) -> dict:
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(Problem=_PROBLEM, FieldError=_FIELD_ERROR, ValidationProblem=_VALIDATION_PROBLEM)
    for component in schemas.values():
        _mark_uploads_binary(component)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            _declare_problems(path, method, operation)
            _declare_headers(method, operation)
            _limit_wait(operation)
            _lift_deprecation(operation)
    return schema


def problem_statuses(path: str, method: str, operation: dict) -> list[int]:
    """Which problems an operation can answer, from what it is: authenticated, addressed by id, a write."""
    statuses = {422} if operation.get("parameters") or operation.get("requestBody") else set()
    if operation.get("security"):
        statuses |= {401, 403, 429, 503}
    if "{" in path:
        statuses.add(404)
    if method == "post":
        statuses |= {400, 409, 411, 413}
        if "multipart/form-data" in operation.get("requestBody", {}).get("content", {}):
            statuses.add(415)
    if method == "patch":
        statuses |= {409, 413}
    if operation.get("operationId") == "read_readiness":
        statuses.add(503)
    return sorted(statuses)


def _declare_problems(path: str, method: str, operation: dict) -> None:
    responses = operation.setdefault("responses", {})
    for status in problem_statuses(path, method, operation):
        ref = _REF + ("ValidationProblem" if status == 422 else "Problem")
        media = {"schema": {"$ref": ref}}
        if status in _EXAMPLES:
            media["example"] = _EXAMPLES[status]
        response = {"description": f"{_DESCRIPTIONS[status]} (type `{type_for_status(status)}`)",
                    "content": {PROBLEM_JSON: media}}
        if status in (409, 429, 503):
            response["headers"] = _RETRY_AFTER
        responses[str(status)] = response


def _declare_headers(method: str, operation: dict) -> None:
    if method != "post":
        return
    operation.setdefault("parameters", []).append(_IDEMPOTENCY_KEY)
    located = operation.get("operationId") in _LOCATION_OPERATIONS
    for status, response in operation["responses"].items():
        if status.startswith("2"):
            response["headers"] = {**response.get("headers", {}), **_REPLAYED, **(_LOCATION if located else {})}


def _mark_uploads_binary(node) -> None:
    """FastAPI describes an upload as OpenAPI 3.1's `contentMediaType` only; generators (openapi-python-
    client among them) recognise a file by `format: binary`, and without it send the file as a string."""
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("contentMediaType") == "application/octet-stream":
            node["format"] = "binary"
        for child in node.values():
            _mark_uploads_binary(child)
    elif isinstance(node, list):
        for child in node:
            _mark_uploads_binary(child)


def _lift_deprecation(operation: dict) -> None:
    """A deprecated query field (the old `offset`) is marked on the parameter, where docs and
    generators look, not only inside its schema."""
    for parameter in operation.get("parameters", []):
        if parameter.get("schema", {}).get("deprecated"):
            parameter["deprecated"] = True


def _limit_wait(operation: dict) -> None:
    """The schema's limit is the one the server applies (ATTRIB_MAX_WAIT_SECONDS), not a wider constant."""
    limit = get_settings().max_wait_seconds
    for parameter in operation.get("parameters", []):
        if parameter["name"] == "wait" and parameter["in"] == "query":
            parameter["schema"] = {**parameter["schema"], "maximum": limit}
            parameter["schema"].pop("exclusiveMaximum", None)
            parameter["description"] = (f"seconds to wait for the result, at most {limit:g} "
                                        "(ATTRIB_MAX_WAIT_SECONDS); a larger value is capped")

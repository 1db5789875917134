"""`Idempotency-Key` on POST: a retried request gets the first response back, never a second work or
job. Responses are kept in Redis per (API key id, path, idempotency key) for `idempotency_ttl_s`;
the path is taken without its /v1 prefix, so a retry on the other spelling is the same request.
The request body is not compared: reusing a key for a different upload returns the first result.
Only successful (2xx) responses are kept, so a request refused for bad input can be corrected and sent
again with the same key. A repeat that arrives while the first is still running gets 409."""
import hashlib
import json

from fastapi import FastAPI, Request
from fastapi.responses import Response
from redis.exceptions import RedisError

from starlette.concurrency import run_in_threadpool

from app.api.deps import redis_for_url
from app.api.main import API_PREFIX
from app.problems import problem_response
from common.apikeys import authenticate
from common.db.session import new_session
from common.settings import get_settings

HEADER = "Idempotency-Key"
_PENDING = b"pending"
_PENDING_TTL_S = 120
_KEPT_HEADERS = ("content-type", "location")


def _caller_key_id(request: Request) -> str | None:
    """The id of a valid, unrevoked API key, or None (the route then answers 401 itself): a revoked
    key gets no replays, and records are scoped by key id, not by the header's spelling."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        return None
    with new_session() as session:
        key = authenticate(session, secret=secret.strip())
    return str(key.id) if key else None


def canonical_path(path: str) -> str:
    """`/v1/attribute` and `/attribute` are one resource (the unversioned paths are aliases)."""
    return path[len(API_PREFIX):] if path.startswith(API_PREFIX + "/") else path


def _storage_key(key_id: str, path: str, idempotency_key: str) -> str:
    scope = hashlib.sha256(f"{key_id}|{canonical_path(path)}|{idempotency_key}".encode()).hexdigest()
    return f"attrib:idem:{scope}"


def install_idempotency(app: FastAPI) -> None:
    @app.middleware("http")
    async def replay_or_record(request: Request, call_next):
        idempotency_key = request.headers.get(HEADER)
        if request.method != "POST" or idempotency_key is None:
            return await call_next(request)
        if not 1 <= len(idempotency_key) <= 200:
            return problem_response(request, 400, "Invalid Idempotency-Key",
                                    "the Idempotency-Key header must have 1 to 200 characters")
        settings = get_settings()
        key_id = await run_in_threadpool(_caller_key_id, request)
        if key_id is None:
            return await call_next(request)
        try:
            redis = redis_for_url(settings.redis_url)
            slot = _storage_key(key_id, request.url.path, idempotency_key)
            if not redis.set(slot, _PENDING, nx=True, ex=_PENDING_TTL_S):
                return _replay(request, redis.get(slot))
        except RedisError:
            return problem_response(request, 503, "Queue unavailable", "Redis cannot be reached; retry shortly",
                                    headers={"Retry-After": "5"})
        response = await call_next(request)
        return await _record(redis, slot, response, settings.idempotency_ttl_s)


def _replay(request: Request, stored: bytes | None) -> Response:
    if stored is None or stored == _PENDING:
        return problem_response(request, 409, "Request in progress",
                                "a request with this Idempotency-Key is still being processed; retry shortly",
                                headers={"Retry-After": "1"})
    saved = json.loads(stored)
    return Response(saved["body"].encode("latin-1"), status_code=saved["status"],
                    headers={**saved["headers"], "Idempotent-Replayed": "true"})


async def _record(redis, slot: str, response: Response, ttl_s: int) -> Response:
    body = b"".join([chunk async for chunk in response.body_iterator])
    headers = {k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS}
    # Responses marked no-store (secrets) are never written to Redis: a repeat runs again instead.
    storable = "no-store" not in response.headers.get("cache-control", "")
    try:
        if 200 <= response.status_code < 300 and storable:
            saved = {"status": response.status_code, "headers": headers, "body": body.decode("latin-1")}
            redis.set(slot, json.dumps(saved), ex=ttl_s)
        else:
            redis.delete(slot)
    except RedisError:
        pass  # the request itself succeeded; only the replay record is lost
    return Response(body, status_code=response.status_code, headers=dict(response.headers))

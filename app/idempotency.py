"""`Idempotency-Key` on POST: a retried request gets the first response back, never a second work or
job. Responses are kept in Redis per (API key id, path, idempotency key) for `idempotency_ttl_s`;
the path is taken without its /v1 prefix, so a retry on the other spelling is the same request.
The request body is not compared: reusing a key for a different upload returns the first result.
Only successful (2xx) responses are kept, so a request refused for bad input (or failing) can be
corrected and sent again with the same key. A repeat that arrives while the first is still running
gets 409. A response marked `Cache-Control: no-store` (one that shows a secret, e.g. a new API key) is
never recorded: secrets are stored nowhere, so such a request is simply not idempotent.
The caller's key comes from the gate (app/gate.py), which meters replays like any request."""
import hashlib
import json

from fastapi import FastAPI, Request
from fastapi.responses import Response
from redis.exceptions import RedisError

from starlette.concurrency import run_in_threadpool

from app.api.deps import redis_for_url
from app.api.main import API_PREFIX
from app.problems import problem_response
from common.settings import get_settings

HEADER = "Idempotency-Key"
_PENDING = b"pending"
_PENDING_TTL_S = 120
_KEPT_HEADERS = ("content-type", "location")


def _caller_key_id(request: Request) -> str | None:
    """The id of the valid key the gate found, or None (the route then answers 401 itself)."""
    key = request.scope.get("state", {}).get("api_key")
    return str(key.id) if key is not None else None


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
        key_id = _caller_key_id(request)
        if key_id is None:
            return await call_next(request)
        redis = redis_for_url(settings.redis_url)
        slot = _storage_key(key_id, request.url.path, idempotency_key)
        try:
            if not await run_in_threadpool(redis.set, slot, _PENDING, nx=True, ex=_PENDING_TTL_S):
                return _replay(request, await run_in_threadpool(redis.get, slot))
        except RedisError:
            return problem_response(request, 503, "Queue unavailable", "Redis cannot be reached; retry shortly",
                                    headers={"Retry-After": "5"})
        try:
            response = await call_next(request)
        except BaseException:
            await _release(redis, slot)  # a failed request must not leave the slot `pending`
            raise
        return await _record(redis, slot, response, settings.idempotency_ttl_s)


async def _release(redis, slot: str) -> None:
    try:
        await run_in_threadpool(redis.delete, slot)
    except RedisError:
        pass  # the pending marker expires after _PENDING_TTL_S anyway


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
    storable = "no-store" not in response.headers.get("cache-control", "").lower()
    if not (200 <= response.status_code < 300 and storable):
        await _release(redis, slot)
        return Response(body, status_code=response.status_code, headers=dict(response.headers))
    saved = {"status": response.status_code, "headers": headers, "body": body.decode("latin-1")}
    try:
        await run_in_threadpool(redis.set, slot, json.dumps(saved), ex=ttl_s)
    except RedisError:
        pass  # the request itself succeeded; only the replay record is lost
    return Response(body, status_code=response.status_code, headers=dict(response.headers))

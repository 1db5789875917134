"""The gate every request passes before any route: who is calling, how often, and how large a body
they may send, decided before a byte of the body is read (a pure ASGI middleware; Starlette would
otherwise spool multipart uploads to disk before the route's dependencies check the key).

- A bearer key is checked once here (the routes reuse it from `request.state.api_key`) and metered
  per key, replays of an Idempotency-Key included (that middleware sits inside this one).
- Anonymous requests and unknown or revoked keys are metered per client address (each costs a
  database lookup), except the health checks and the API docs, which need no key.
- POST/PUT/PATCH need a valid key before their body is read, and the body is counted while it
  streams, whatever the transfer encoding (chunked, `gzip, Chunked`, no Content-Length at all):
  past max_request_bytes the request gets 413 and nothing more is read."""
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import redis_for_url
from app.problems import Problem, problem_response
from app.ratelimit import enforce_rate_limit
from app.keycache import CachedKey, lookup_key, unmetered_key
from common.settings import Settings, get_settings

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
# Pages anyone may read: problem explanations, the docs' assets, the console's page shells and script (the
# console's JSON calls carry the key; routes that need one still refuse a missing key themselves).
PUBLIC_PREFIXES = ("/problems", "/static/docs/", "/console")
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Gate:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":  # liveness needs no thread, no Redis
            return await self.app(scope, receive, send)
        request, settings = Request(scope), get_settings()
        exchange = _Exchange(scope, send)
        try:
            key = await _identify_or_outage(request, settings)
            if scope["method"] in BODY_METHODS:
                receive = exchange.counted(receive, _body_limit(request, settings))
        except Problem as problem:
            response = problem_response(request, problem.status, problem.title, problem.detail,
                                        headers=problem.headers, **problem.extra)
            return await response(scope, receive, send)
        scope.setdefault("state", {})["api_key"] = key
        try:
            await self.app(scope, receive, exchange.send)
        except Exception:
            if not exchange.answered:
                raise  # else: the app failed to read the body we cut off, after we answered 413


class _Exchange:
    """Counts the body as the app reads it. Past the limit it answers 413 itself and tells the app
    the client is gone (an exception raised from `receive` would reach the app wrapped in exception
    groups by the middlewares in between, and come out as a 400)."""

    def __init__(self, scope: Scope, send: Send):
        self.scope, self._send = scope, send
        self.started = self.answered = False

    async def send(self, message: Message) -> None:
        if self.answered:
            return  # the 413 has been sent; whatever the app says afterwards goes nowhere
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)

    def counted(self, receive: Receive, limit: int) -> Receive:
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    await self._answer_too_large(limit)
                    return {"type": "http.disconnect"}
            return message
        return counting_receive

    async def _answer_too_large(self, limit: int) -> None:
        if not self.started and not self.answered:
            response = problem_response(Request(self.scope), 413, "Request too large",
                                        f"the request body exceeds {limit} bytes", reason="too_large")
            await response(self.scope, _nothing, self._send)
        self.answered = True


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


async def _identify_or_outage(request: Request, settings: Settings) -> CachedKey | None:
    """As _identify, with outages answered like the routes answer them (503 + Retry-After), except
    on the public paths: /readyz must still say "not ready" when it cannot check the caller's key."""
    public = is_public(request.url.path)
    if public and "authorization" not in request.headers:
        return None
    try:
        return await run_in_threadpool(_identify, request, settings)
    except OperationalError as exc:
        if public:
            return None
        raise Problem(503, "the database cannot be reached; retry shortly", title="Database unavailable",
                      headers={"Retry-After": "5"}) from exc
    except RedisError as exc:
        if public:
            return None
        raise Problem(503, "the job queue (Redis) cannot be reached; retry shortly", title="Queue unavailable",
                      headers={"Retry-After": "5"}) from exc


def _identify(request: Request, settings: Settings) -> CachedKey | None:
    """The caller's valid key (metered per key), or None for a public path; otherwise 401/429."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip() if scheme.lower() == "bearer" else ""
    if request.url.path in HEALTH_PATHS:
        # Health checks are not metered and must answer during a Redis outage: the key (which only adds
        # details for admins) is read from the database alone.
        return unmetered_key(secret) if secret else None
    if is_public(request.url.path) and not secret:
        return None
    redis = redis_for_url(settings.redis_url)
    # Looked up through the per-process key cache (app/keycache.py) and metered against the key's rate;
    # a key sent to a public page is checked and metered like anywhere else (no free key-guessing oracle).
    key = lookup_key(redis, settings, secret) if secret else None
    if key is not None:
        return key
    client = request.client.host if request.client else "unknown"
    enforce_rate_limit(redis, f"ip:{client}", settings.anonymous_rate_limit_requests, settings.rate_limit_window_s,
                       who="address")
    if is_public(request.url.path):  # an unknown key on a public page: metered per address, then served
        return None
    if secret:
        raise Problem(401, "the API key is unknown or revoked", title="Invalid API key", headers=CHALLENGE)
    raise Problem(401, "send an API key as `Authorization: Bearer <key>`", title="API key required",
                  headers=CHALLENGE)


def _body_limit(request: Request, settings: Settings) -> int:
    # Bulk registration carries many images in one request: it has its own, larger limit.
    bulk = request.url.path.rstrip("/").endswith("/sources/bulk")
    limit = settings.bulk_max_request_bytes if bulk else settings.max_request_bytes
    length = request.headers.get("content-length")
    if length is not None and (not length.strip().isdigit() or int(length) > limit):
        raise Problem(413, f"the request body exceeds {limit} bytes", title="Request too large", reason="too_large")
    return limit

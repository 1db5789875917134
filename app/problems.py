"""Every error leaves as application/problem+json (RFC 9457) with a clear title and detail."""
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.problem_types import type_for_status
from common.images import ImageRejected

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    def __init__(self, status: int, detail: str, title: str | None = None, type_: str | None = None,
                 headers: dict[str, str] | None = None, **extra):
        self.status, self.detail, self.type = status, detail, type_
        self.title = title or HTTPStatus(status).phrase
        self.headers, self.extra = headers, extra


def invalid_parameter(loc: list, msg: str) -> Problem:
    """A 422 about one named parameter, shaped like FastAPI's own validation problems."""
    return Problem(422, f"{'.'.join(map(str, loc))}: {msg}", title="Invalid request parameters",
                   errors=[{"loc": loc, "msg": msg}])


def problem_response(request: Request, status: int, title: str, detail: str, type_: str | None = None,
                     headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    """`type_` defaults to the status's entry in the catalogue (app/problem_types.py), which resolves.
    Every 422 carries `errors` (the schema declares it required), even when no single field is at fault."""
    if status == 422:
        extra.setdefault("errors", [{"loc": [], "msg": detail}])
    body = {"type": type_ or type_for_status(status), "title": title, "status": status, "detail": detail,
            "instance": request.url.path, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _on_problem(request: Request, exc: Problem) -> JSONResponse:
    return problem_response(request, exc.status, exc.title, exc.detail, exc.type, exc.headers, **exc.extra)


async def _on_image_rejected(request: Request, exc: ImageRejected) -> JSONResponse:
    titles = {413: "Image too large", 415: "Unsupported image format"}
    return problem_response(request, exc.status, titles.get(exc.status, "Invalid image"), exc.detail,
                            f"/problems/{exc.reason.replace('_', '-')}", reason=exc.reason,
                            **({"errors": [{"loc": ["body"], "msg": exc.detail}]} if exc.status == 422 else {}))


async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return problem_response(request, exc.status_code, HTTPStatus(exc.status_code).phrase, str(exc.detail),
                            headers=getattr(exc, "headers", None))


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return problem_response(request, 422, "Invalid request parameters", detail, errors=errors)


async def _on_database_down(request: Request, exc: OperationalError) -> JSONResponse:
    return problem_response(request, 503, "Database unavailable",
                            "the database cannot be reached; retry shortly", headers={"Retry-After": "5"})


async def _on_unstorable(request: Request, exc: DataError) -> JSONResponse:
    # A value the database refuses that validation did not catch: bad input, never a 500.
    return problem_response(request, 422, "Invalid request parameters",
                            "a value contains characters or a size the database cannot store")


async def _on_queue_down(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, 503, "Queue unavailable",
                            "the job queue (Redis) cannot be reached; retry shortly", headers={"Retry-After": "5"})


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(ImageRejected, _on_image_rejected)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(OperationalError, _on_database_down)
    app.add_exception_handler(DataError, _on_unstorable)
    app.add_exception_handler(RedisConnectionError, _on_queue_down)
    app.add_exception_handler(RedisTimeoutError, _on_queue_down)

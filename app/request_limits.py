"""Refuse oversized request bodies from their Content-Length, before Starlette spools the multipart
parts to disk (the per-image limit applies later, while each part is read). Bulk registration has its
own, larger limit (settings.bulk_max_request_bytes)."""
from fastapi import FastAPI, Request

from app.problems import problem_response
from common.settings import get_settings


def install_request_limits(app: FastAPI) -> None:
    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            settings = get_settings()
            bulk = request.url.path.rstrip("/") == "/sources/bulk"
            limit = settings.bulk_max_request_bytes if bulk else settings.max_request_bytes
            if length is None and "chunked" in request.headers.get("transfer-encoding", ""):
                return problem_response(request, 411, "Length Required",
                                        "send the body with a Content-Length (chunked uploads are not accepted)")
            if length is not None and (not length.isdigit() or int(length) > limit):
                return problem_response(request, 413, "Request too large",
                                        f"the request body exceeds {limit} bytes", reason="too_large")
        return await call_next(request)

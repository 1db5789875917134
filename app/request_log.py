"""One access line per request with its id, the caller's key id and timing; the request id comes
from `X-Request-ID` when the client (or a proxy) sends a sane one, and is echoed back."""
import logging
import re
import time
import uuid

from fastapi import FastAPI, Request

from common.logging_config import log_context

log = logging.getLogger("attrib.access")
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def install_request_log(app: FastAPI) -> None:
    @app.middleware("http")
    async def log_request(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        request_id = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        start = time.perf_counter()
        with log_context(request_id=request_id) as ids:
            response = await call_next(request)
            response.headers["X-Request-ID"] = request_id
            log.info("%s %s %d", request.method, request.url.path, response.status_code,
                     extra={"fields": {"method": request.method, "path": request.url.path,
                                       "status": response.status_code,
                                       "duration_ms": round((time.perf_counter() - start) * 1000, 1)}})
        return response

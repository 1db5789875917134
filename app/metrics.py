"""Request counters and latency histograms per route template (not per raw path, to bound labels)."""
import time

from fastapi import FastAPI, Request
from prometheus_client import Counter, Histogram

REQUESTS = Counter("attrib_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("attrib_http_request_seconds", "HTTP request latency", ["method", "route"])


def install_metrics(app: FastAPI) -> None:
    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        REQUESTS.labels(request.method, template, str(response.status_code)).inc()
        LATENCY.labels(request.method, template).observe(time.perf_counter() - start)
        return response

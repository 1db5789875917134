"""Composition root: builds the FastAPI app and nothing else."""
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.main import api_router
from app.docs import install_docs
from app.console import install_console
from app.idempotency import install_idempotency
from app.metrics import install_metrics
from app.openapi import install_openapi
from app.problems import install_problem_handlers
from app.gate import Gate
from app.request_log import install_request_log
from app.uploads import CHECKERS
from app.waiting import JobEvents
from common.gc_tuning import tune_collector
from common.logging_config import configure_logging
from common.settings import get_settings


@asynccontextmanager
async def lifespan(app: FastAPI):
    """One job-events listener per process, for `?wait` (app/waiting.py); start-up's objects frozen out
    of garbage collection (common/gc_tuning.py); at shutdown, the upload checks' decoder children end
    (app/uploads.py)."""
    settings = get_settings()
    if settings.api_threads:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
    app.state.job_events = JobEvents(settings.redis_url, max_waits=settings.max_concurrent_waits,
                                     max_waits_per_key=settings.max_concurrent_waits_per_key,
                                     recheck_s=settings.wait_recheck_s)
    await app.state.job_events.start()
    slow_collections = tune_collector(settings.gc_freeze, settings.gc_log_slow_ms)
    try:
        yield
    finally:
        if slow_collections is not None:
            slow_collections.remove()
        try:
            await app.state.job_events.stop()
        finally:
            CHECKERS.close()


def operation_id(route: APIRoute) -> str:
    """The handler's name (`create_source`, `read_attribution`): stable method names in generated clients."""
    return route.name


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(service="api", log_format=settings.log_format, level=settings.log_level)
    app = FastAPI(title="attrib: synthetic-image attribution",
                  description="Register copyrighted works; find which of them an AI-generated image draws on.",
                  version="0.1.0", docs_url=None, redoc_url=None, generate_unique_id_function=operation_id,
                  lifespan=lifespan)
    install_problem_handlers(app)
    # A middleware added later wraps the earlier ones: request log, metrics, then the gate (key, rate,
    # body size; before any body is read), then idempotency (so its replays are metered too).
    install_idempotency(app)
    app.add_middleware(Gate)
    install_metrics(app)
    install_request_log(app)
    app.include_router(api_router)
    install_docs(app)
    install_openapi(app)
    install_console(app)
    return app


app = create_app()

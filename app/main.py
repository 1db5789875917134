"""Composition root: builds the FastAPI app and nothing else."""
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.main import api_router
from app.docs import install_docs
from app.console import install_console
from app.idempotency import install_idempotency
from app.metrics import install_metrics
from app.openapi import install_openapi
from app.problems import install_problem_handlers
from app.request_limits import install_request_limits
from app.request_log import install_request_log
from common.logging_config import configure_logging
from common.settings import get_settings


def operation_id(route: APIRoute) -> str:
    """The handler's name (`create_source`, `read_attribution`): stable method names in generated clients."""
    return route.name


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(service="api", log_format=settings.log_format, level=settings.log_level)
    app = FastAPI(title="attrib: synthetic-image attribution",
                  description="Register copyrighted works; find which of them an AI-generated image draws on.",
                  version="0.1.0", docs_url=None, redoc_url=None, generate_unique_id_function=operation_id)
    install_problem_handlers(app)
    # A middleware added later wraps the earlier ones: request log, metrics, size limits, idempotency.
    install_idempotency(app)
    install_request_limits(app)
    install_metrics(app)
    install_request_log(app)
    app.include_router(api_router)
    install_docs(app)
    install_openapi(app)
    install_console(app)
    return app


app = create_app()

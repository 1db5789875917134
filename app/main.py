"""Composition root: builds the FastAPI app and nothing else."""
from fastapi import FastAPI

from app.api.main import api_router
from app.console import install_console
from app.idempotency import install_idempotency
from app.metrics import install_metrics
from app.problems import install_problem_handlers
from app.request_limits import install_request_limits


def create_app() -> FastAPI:
    app = FastAPI(title="attrib: synthetic-image attribution",
                  description="Register copyrighted works; find which of them an AI-generated image draws on.",
                  version="0.1.0")
    install_problem_handlers(app)
    # A middleware added later wraps the earlier ones: metrics, then size limits, then idempotency.
    install_idempotency(app)
    install_request_limits(app)
    install_metrics(app)
    app.include_router(api_router)
    install_console(app)
    return app


app = create_app()

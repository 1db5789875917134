"""Swagger UI and ReDoc from files shipped in a Python package (fastapi-offline), so /docs works on a
machine without internet (FastAPI's defaults load them from a CDN and render blank offline)."""
from importlib.util import find_spec
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_PREFIX = "/static/docs"


def docs_assets_dir() -> Path:
    spec = find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("the package fastapi-offline (Swagger UI and ReDoc files) is not installed")
    return Path(spec.origin).parent / "static"


def install_docs(app: FastAPI) -> None:
    """Call with FastAPI(docs_url=None, redoc_url=None): these routes replace the CDN ones."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=docs_assets_dir()), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def read_swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title}: API",
                                   swagger_js_url=f"{STATIC_PREFIX}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC_PREFIX}/swagger-ui.css",
                                   swagger_favicon_url=f"{STATIC_PREFIX}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def read_redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title}: API",
                              redoc_js_url=f"{STATIC_PREFIX}/redoc.standalone.js",
                              redoc_favicon_url=f"{STATIC_PREFIX}/favicon.png", with_google_fonts=False)

"""The web console: server-rendered page shells (Jinja2) and one static script that calls the JSON API.

Sign-in keeps the API key in the tab's sessionStorage and sends it as `Authorization: Bearer`, exactly like
any client: no cookie is ever set, so there is no ambient credential and no cross-site request forgery to
defend against; the key is forgotten when the tab closes. Pages carry no data; the script fetches it with
the key and writes it with textContent only (never as HTML), under a strict Content-Security-Policy."""
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.console import pages, reports, status

STATIC_DIR = Path(__file__).parent / "static"


def install_console(app: FastAPI) -> None:
    app.include_router(pages.router)
    app.include_router(status.router)
    app.include_router(reports.router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")

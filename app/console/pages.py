"""Page shells of the console. They need no key (they hold no data); the script loads the data."""
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# Scripts, styles and images from this origin only (blob: for thumbnails fetched with the key).
_CSP = ("default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
# The run report page shows a stored, self-contained report (inline styles, data: images) in a sandboxed
# frame that inherits this page's policy: only this page allows those two, and still no script but ours.
_REPORT_CSP = _CSP.replace("img-src 'self' blob:", "img-src 'self' blob: data:").replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'")
_PAGES = {"signin": "Sign in", "attribute": "Attribute an image", "job": "Attribution result",
          "works": "Works", "register": "Register a work", "admin": "Service state", "report": "Run report"}


def _page(request: Request, page: str, csp: str = _CSP, **context) -> HTMLResponse:
    response = templates.TemplateResponse(request, f"{page}.html",
                                          {"page": page, "heading": _PAGES[page], **context})
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("")
def read_console_root() -> RedirectResponse:
    return RedirectResponse("/console/attribute", status_code=303)


@router.get("/signin", response_class=HTMLResponse)
def read_signin(request: Request) -> HTMLResponse:
    return _page(request, "signin")


@router.get("/attribute", response_class=HTMLResponse)
def read_attribute_page(request: Request) -> HTMLResponse:
    return _page(request, "attribute")


@router.get("/jobs", response_class=HTMLResponse)
def read_jobs_page(request: Request) -> HTMLResponse:
    return _page(request, "job", job_id="")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def read_job_page(request: Request, job_id: str) -> HTMLResponse:
    return _page(request, "job", job_id=job_id)


@router.get("/works", response_class=HTMLResponse)
def read_works_page(request: Request) -> HTMLResponse:
    return _page(request, "works")


@router.get("/works/new", response_class=HTMLResponse)
def read_register_page(request: Request) -> HTMLResponse:
    return _page(request, "register")


@router.get("/admin", response_class=HTMLResponse)
def read_admin_page(request: Request) -> HTMLResponse:
    return _page(request, "admin")


@router.get("/reports/{pair_id}", response_class=HTMLResponse)
def read_report_page(request: Request, pair_id: int) -> HTMLResponse:
    return _page(request, "report", csp=_REPORT_CSP, pair_id=pair_id)

"""`GET /problems/{slug}`: what a problem `type` means, as JSON or (for a browser) a short HTML page.
Open to everyone: an error's explanation must be readable by the client that got the error."""
import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from app.problem_types import PROBLEM_TYPES, ProblemType
from app.problems import Problem

router = APIRouter(prefix="/problems", tags=["problems"])


class ProblemTypePublic(BaseModel):
    type: str
    status: int
    title: str
    explanation: str


def _public(problem_type: ProblemType) -> ProblemTypePublic:
    return ProblemTypePublic(type=problem_type.uri, status=problem_type.status, title=problem_type.title,
                             explanation=problem_type.explanation)


@router.get("", response_model=list[ProblemTypePublic])
def read_problem_types() -> list[ProblemTypePublic]:
    """Every problem type this service sends."""
    return [_public(t) for t in PROBLEM_TYPES.values()]


@router.get("/{slug}", response_model=ProblemTypePublic,
            responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}})
def read_problem_type(slug: str, request: Request):
    """One problem type: JSON, or HTML when the client prefers text/html."""
    problem_type = PROBLEM_TYPES.get(slug)
    if problem_type is None:
        raise Problem(404, f"no problem type {slug[:100]!r}", title="Unknown problem type")
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(_page(problem_type))
    return _public(problem_type)


def _page(t: ProblemType) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(t.title)}</title></head>"
            f"<body><h1>{t.status} {html.escape(t.title)}</h1><p><code>{html.escape(t.uri)}</code></p>"
            f"<p>{html.escape(t.explanation)}</p><p><a href='/problems'>all problem types</a></p></body></html>")

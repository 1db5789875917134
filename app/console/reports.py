"""The HTML report of the serving pair's training/evaluation run (training.html_report), for admins.

`training publish` (and `retrain`) put the run's self-contained page in shared storage and name its key in
the pair's report (`html_report`); this reads it through storage like every stored object, so the API may
run on a host that never saw the trainer's files. Admins only: other keys get 403, a pair without a
report 404. The page is served as an inert document: its own Content-Security-Policy allows nothing but
inline styles and `data:` images and sandboxes it, so even a tampered report could run no script."""
from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.api.deps import SessionDep, StorageDep
from app.problems import Problem
from app.security import AdminKey
from common.db.models import ModelPair

router = APIRouter(tags=["console"], include_in_schema=False)
REPORT_KEY = "html_report"
PairId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; sandbox"


def report_url(pair: ModelPair) -> str | None:
    """Where the console fetches a pair's report; None when its run stored none."""
    return f"/admin/pairs/{pair.id}/report" if (pair.report or {}).get(REPORT_KEY) else None


@router.get("/admin/pairs/{pair_id}/report", operation_id="read_pair_report")
def read_pair_report(_: AdminKey, session: SessionDep, storage: StorageDep, pair_id: PairId) -> Response:
    """The run report of a published pair, as stored when it was published."""
    pair = session.get(ModelPair, pair_id)
    key = (pair.report or {}).get(REPORT_KEY) if pair else None
    if not key:
        raise Problem(404, f"pair {pair_id} has no stored run report", title="No report")
    try:
        page = storage.get(key)
    except FileNotFoundError:
        raise Problem(404, f"the run report of pair {pair_id} is no longer in storage", title="No report") from None
    return Response(page, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                             "Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"})

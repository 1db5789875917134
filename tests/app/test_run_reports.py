"""A published pair's run report (training.html_report) through the console's admin endpoint: read from
shared storage, admins only, 404 in plain words when a pair has none or storage lost it."""
from datetime import datetime, timezone

from common.db.models import ModelPair
from common.db.session import new_session
from common.settings import get_settings
from common.storage import get_storage
from tests.conftest import auth


def add_pair(report: dict | None, active: bool = True) -> int:
    with new_session() as session:
        pair = ModelPair(encoder_id="attrib-test@1", encoder_uri="builtin:efficientnet-lite0", index_id="idx",
                         report=report, active=active, activated_at=datetime.now(timezone.utc))
        session.add(pair)
        session.commit()
        return pair.id


def test_a_stored_report_is_served_to_admins_only(client, make_key):
    get_storage(get_settings()).put("reports/idx/report.html", b"<!doctype html><h1>run</h1>")
    pair_id = add_pair({"map": 0.4, "html_report": "reports/idx/report.html"})
    response = client.get(f"/admin/pairs/{pair_id}/report")
    assert response.status_code == 200 and response.text == "<!doctype html><h1>run</h1>"
    assert response.headers["cache-control"] == "private, no-store"
    reviewer = auth(make_key("reviewer", name="r"))
    assert client.get(f"/admin/pairs/{pair_id}/report", headers=reviewer).status_code == 403
    assert client.get(f"/admin/pairs/{pair_id + 1}/report", headers=reviewer).status_code == 403
    assert client.get(f"/admin/pairs/{pair_id}/report", headers={"Authorization": ""}).status_code == 401


def test_no_report_is_a_plain_404(client):
    without = add_pair({"map": 0.4}, active=False)
    lost = add_pair({"map": 0.4, "html_report": "reports/gone/report.html"})
    assert client.get("/admin/status").json()["serving"]["report_url"] == f"/admin/pairs/{lost}/report"
    for pair_id, detail in ((without, "has no stored run report"), (lost, "no longer in storage"),
                            (lost + 1, "has no stored run report")):
        response = client.get(f"/admin/pairs/{pair_id}/report")
        assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
        assert detail in response.json()["detail"]
    assert client.get("/admin/pairs/0/report").status_code == 422


def test_a_pair_without_report_shows_no_link(client):
    add_pair(None)
    assert client.get("/admin/status").json()["serving"]["report_url"] is None

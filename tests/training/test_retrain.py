"""`python -m training retrain` end to end on the smoke preset: train on the registered works, export,
calibrate, evaluate head to head with the serving encoder, rebuild, publish."""
import json

from common.db import crud
from common.db.session import new_session
from tests.conftest import auth
from tests.factories import photo_bytes
from tests.training.report_checks import assert_evaluation_sections, read_report
from training.retrain import main as retrain


def register(client, subject):
    files = [("images", (f"{subject}{i}.jpg", photo_bytes(subject, i), "image/jpeg")) for i in (0, 1, 2)]
    assert client.post("/sources", files=files, data={"title": subject, "rights_holder": "s"}).status_code == 201


def test_retrain_publishes_a_calibrated_encoder(client, service_env, make_key, tmp_path, capsys):
    for subject in ("dog", "cat", "teapot", "vase"):
        register(client, subject)
    assert retrain(["--preset", "smoke", "--force", "--yes", "batch_size=4"]) == 0
    out = capsys.readouterr().out
    assert "[5/5] publishing" in out and "published pair" in out
    with new_session() as session:
        pair = crud.get_active_pair(session)
    assert pair is not None and pair.encoder_id.startswith("attrib-lite0-retrain-")
    meta = json.loads((tmp_path.joinpath(pair.encoder_uri) / "encoder.json").read_text())
    assert meta["calibration"]["fitted"] is True
    assert pair.report["eval_set"] == "registry" and 0 <= pair.report["map"] <= 1
    index = json.loads((tmp_path.joinpath(pair.index_path) / "index.json").read_text())
    assert index["encoder_id"] == pair.encoder_id and index["count"] == 12

    # The run's report went to shared storage with the pair; the console's admin page links it, admins only.
    assert pair.report["html_report"] == f"reports/{pair.index_id}/report.html"
    status = client.get("/admin/status").json()
    assert status["serving"]["report_url"] == f"/admin/pairs/{pair.id}/report"
    response = client.get(status["serving"]["report_url"])
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "sandbox" in response.headers["content-security-policy"]
    page = read_report(response.text)
    assert len(page.images["losses"]) == 1 and "gate (service mAP)" in page.text["summary"]
    assert_evaluation_sections(page, encoders=2, queries=8, top=4)  # the registry: 4 works, 2 queries each
    for scope, holder in (("reviewer", None), ("attributor", None), ("registrar", "s")):
        denied = client.get(status["serving"]["report_url"], headers=auth(make_key(scope, holder, name=scope)))
        assert denied.status_code == 403 and "html" not in denied.headers["content-type"]


def test_forcing_a_worse_encoder_shows_the_numbers_and_needs_confirmation(capsys):
    """Issue 7 (#15): --force published a 72.5 % encoder over the serving 95.2 % without asking."""
    from training.retrain import confirm_forced_publish
    assert not confirm_forced_publish(95.2, 72.5, assume_yes=False, interactive=False)
    assert "72.5% against 95.2% (-22.7 points)" in capsys.readouterr().out
    assert not confirm_forced_publish(95.2, 72.5, assume_yes=False, ask=lambda _: "no", interactive=True)
    assert confirm_forced_publish(95.2, 72.5, assume_yes=False, ask=lambda _: "yes", interactive=True)
    assert confirm_forced_publish(95.2, 72.5, assume_yes=True, interactive=False)

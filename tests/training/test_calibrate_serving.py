"""`python -m training calibrate` for the serving encoder: pseudo-pairs from the registered works'
stored vectors, published as a new pair; results name their pair and calibration, the ranking stays."""
import pytest

from core.calibration import packaged_calibration
from core.encoder import load_encoder
from training.calibrate import main as calibrate
from training.publish import ActivePairChanged, publish_calibration, rollback
from tests.factories import photo_bytes
from tests.training.test_publish import attribute as attribute_image, wait_searchable


def attribute(client):
    # A photo of an unregistered subject: its scores are close together, so a new calibration visibly
    # changes the shares (a near copy of a work gets share 1.0 under any reasonable calibration).
    return attribute_image(client, "backpack", 0)


def register(client, subject):
    files = [("images", (f"{subject}{i}.jpg", photo_bytes(subject, i), "image/jpeg")) for i in (0, 1)]
    return client.post("/sources", files=files, data={"title": subject, "rights_holder": "s"}).json()["id"]


def test_calibrate_publishes_a_new_pair_and_old_results_keep_theirs(client, start_worker, capsys):
    start_worker()
    wait_searchable(client, [register(client, s) for s in ("dog", "teapot", "vase", "cat")])
    before = attribute(client)
    packaged = packaged_calibration(before["encoder_id"]).summary()
    assert before["pair_id"] is None and before["calibration"] == packaged

    calibration = calibrate(["--queries", "8", "--pool", "100"])
    assert "published pair" in capsys.readouterr().out
    assert calibration.fitted and calibration.fitted_on.startswith("pseudo-pairs: 8 augmented source images")
    assert calibration.n == 6 and 0 <= calibration.ece <= 1  # 3/4 fitted, 1/4 held out for the ECE

    after = attribute(client)
    assert after["pair_id"] is not None and after["encoder_id"] == before["encoder_id"]
    assert after["calibration"] == {"fitted_on": calibration.fitted_on, "ece": calibration.ece}
    assert [m["work_id"] for m in after["matches"]] == [m["work_id"] for m in before["matches"]]
    assert [m["share"] for m in after["matches"]] != [m["share"] for m in before["matches"]]
    assert client.get(before["status_url"]).json() == before  # an old result never changes silently

    encoder = load_encoder("builtin:efficientnet-lite0")
    with pytest.raises(ActivePairChanged):  # fitted while no pair was active, but one is now
        publish_calibration(calibration, encoder, based_on=None)
    assert rollback() is None  # back to the packaged default
    assert attribute(client)["calibration"] == packaged


def test_calibrating_with_nothing_registered_says_so(service_env):
    with pytest.raises(SystemExit, match="no stored vectors"):
        calibrate(["--dry-run"])

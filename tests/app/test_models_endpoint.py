"""GET /models: the serving pair, the earlier ones with their evaluations and publication times, and
what each live worker has loaded; server paths in a report are shown to admins only."""
from datetime import datetime, timedelta, timezone

from common.db.models import ModelPair
from common.jobs import heartbeat_key
from common.db.session import new_session
from tests.conftest import auth

CALIBRATION = {"inv_tau": 26.8, "bias": -35.1, "fitted": True, "fitted_on": "pseudo-pairs", "ece": 0.045}
REPORT = {"map": 0.71, "serving_map": 0.69, "eval_set": "crossdomain", "serving": "/srv/artifacts/encoders/old"}


def publish_two_pairs() -> None:
    """The rows `training publish` leaves after two publishes (the second one active)."""
    earlier = datetime.now(timezone.utc) - timedelta(days=1)
    with new_session() as session:
        session.add(ModelPair(encoder_id="enc-a@1", encoder_uri="/srv/a", index_id="idx-a", report=None,
                              active=False, created_at=earlier, activated_at=earlier))
        session.add(ModelPair(encoder_id="enc-b@2", encoder_uri="/srv/b", index_id="idx-b", report=REPORT,
                              calibration=CALIBRATION, active=True, activated_at=datetime.now(timezone.utc)))
        session.commit()


def test_models_show_serving_and_previous_pairs(anonymous_client, make_key, redis_client, service_env):
    assert anonymous_client.get("/v1/models").status_code == 401
    attributor, admin = auth(make_key("attributor")), auth(make_key("admin"))
    empty = anonymous_client.get("/v1/models", headers=attributor).json()
    assert empty == {"serving": None, "workers": [], "previous": []}

    publish_two_pairs()
    redis_client.set(heartbeat_key(service_env["ATTRIB_QUEUE_NAME"], "w1"), '{"encoder_id": "enc-b@2", '
                     '"index_id": "idx-b", "index_size": 12, "pair_id": 2, "loaded_from": "/srv/b", '
                     '"index_type": "IDMap2,Flat", "queues": ["attribute", "embed"]}', ex=30)
    body = anonymous_client.get("/v1/models", headers=attributor).json()
    assert (body["serving"]["encoder_id"], body["serving"]["index_id"]) == ("enc-b@2", "idx-b")
    assert body["serving"]["activated_at"] and body["serving"]["created_at"]
    assert body["serving"]["evaluation"] == {"map": 0.71, "serving_map": 0.69, "eval_set": "crossdomain"}
    assert [p["encoder_id"] for p in body["previous"]] == ["enc-a@1"]
    assert body["serving"]["calibration"] == {"fitted_on": "pseudo-pairs", "ece": 0.045}
    assert body["previous"][0]["calibration"] is None  # published before it was fitted
    assert body["workers"] == [{"encoder_id": "enc-b@2", "index_id": "idx-b", "index_size": 12, "pair_id": 2,
                                "index_type": "IDMap2,Flat", "queues": ["attribute", "embed"], "calibration": None}]
    assert "/srv" not in anonymous_client.get("/v1/models", headers=attributor).text
    assert anonymous_client.get("/v1/models", headers=admin).json()["serving"]["evaluation"] == REPORT

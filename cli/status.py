"""`attrib status` (admin, run beside the database and Redis): the serving (encoder, index) pair, counts of
works, images, jobs and webhook deliveries by state, and the workers whose heartbeat is alive."""
import argparse
import json

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select

from common.db import crud
from common.db.models import AttributionJob, SourceImage, WebhookDelivery, Work
from common.db.session import new_session
from common.jobs import live_heartbeats
from common.settings import get_settings


def collect() -> dict:
    settings = get_settings()
    with new_session() as session:
        pair = crud.get_active_pair(session)
        report = {
            "serving_pair": ({"id": pair.id, "encoder_id": pair.encoder_id, "index_id": pair.index_id,
                              "activated_at": pair.activated_at.isoformat() if pair.activated_at else None}
                             if pair else {"id": None, "encoder": settings.encoder}),
            "works": session.scalar(select(func.count()).where(Work.deleted_at.is_(None))),
            "images": _by(session, SourceImage.state),
            "jobs": _by(session, AttributionJob.status),
            "deliveries": _by(session, WebhookDelivery.status),
        }
    report["workers"] = _workers(settings)
    return report


def _by(session, column) -> dict[str, int]:
    return {getattr(k, "value", k): n for k, n in session.execute(select(column, func.count()).group_by(column))}


def _workers(settings) -> list[dict] | str:
    try:
        redis = Redis.from_url(settings.redis_url, socket_timeout=3)
        return live_heartbeats(redis, settings.queue_name)
    except RedisError as exc:
        return f"Redis unreachable: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attrib status", description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = collect()
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return 0
    for name, value in report.items():
        if name == "workers" and isinstance(value, list):
            value = ", ".join(w.get("worker", "?") for w in value) or "none alive"
        print(f"{name:<13} {value}")
    return 0

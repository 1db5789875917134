"""Liveness, readiness and Prometheus metrics."""
import json

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import RedisDep, SessionDep, SettingsDep
from app.problems import Problem
from app.queue_metrics import render_queue_metrics
from app.security import AdminKey
from common.jobs import heartbeat_key

router = APIRouter(tags=["health"])


@router.get("/healthz")
def read_health() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def read_readiness(session: SessionDep, redis: RedisDep, settings: SettingsDep) -> dict:
    """Ready when the database and Redis answer and at least one worker has an index loaded."""
    checks = {"database": _check(lambda: session.execute(text("SELECT 1"))),
              "redis": _check(redis.ping)}
    workers = _live_workers(redis, settings.queue_name) if checks["redis"] == "ok" else []
    checks["worker_index"] = "ok" if workers else "no worker with a loaded index"
    if any(v != "ok" for v in checks.values()):
        raise Problem(503, "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
                      title="Not ready", checks=checks, headers={"Retry-After": "5"})
    return {"status": "ready", "checks": checks, "workers": workers}


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as exc:  # any failure means not ready; say which
        return f"unavailable ({type(exc).__name__})"


def _live_workers(redis, queue_name: str) -> list[dict]:
    keys = list(redis.scan_iter(match=heartbeat_key(queue_name, "*"), count=100))
    beats = [redis.get(key) for key in keys]
    return [json.loads(beat) for beat in beats if beat]


@router.get("/metrics", include_in_schema=False)
def read_metrics(_: AdminKey, session: SessionDep, redis: RedisDep, settings: SettingsDep) -> Response:
    """Prometheus metrics of this API process, then the queues' and the live workers' (app.queue_metrics)."""
    body = generate_latest() + render_queue_metrics(redis, session, settings.queue_name)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

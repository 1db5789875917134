"""Liveness, readiness and Prometheus metrics."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import RedisDep, SessionDep, SettingsDep
from app.problems import Problem
from app.queue_metrics import render_queue_metrics
from app.security import MetricsKey
from common.db import crud
from common.db.models import Scope
from common.jobs import KINDS, holds_index, live_heartbeats

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def read_health() -> dict:
    """The process is up. Async on purpose: it needs no thread, database or Redis, so it answers
    while every thread of the pool is busy."""
    return {"status": "ok"}


@router.get("/readyz")
def read_readiness(request: Request, session: SessionDep, redis: RedisDep, settings: SettingsDep) -> dict:
    """Ready when the database and Redis answer, at least one worker has an index loaded, and each queue
    (attribution, embedding) is served by a live worker: with dedicated workers (scripts/stack.sh), a
    stack whose attribution worker is down would take attributions and never answer them.
    Anonymous callers learn ready / not ready only; with an admin key the answer names each check,
    each worker (host, pid, paths, encoder, index size) and the pair it really serves."""
    checks = {"database": _check(lambda: session.execute(text("SELECT 1"))),
              "redis": _check(redis.ping)}
    workers = live_heartbeats(redis, settings.queue_name) if checks["redis"] == "ok" else []
    checks["worker_index"] = "ok" if any(map(holds_index, workers)) else "no worker with a loaded index"
    if workers:
        checks["queues"] = _queues_served(workers)
    ready = all(v == "ok" for v in checks.values())
    if not _is_admin(request):
        if not ready:
            raise Problem(503, "the service is not ready", title="Not ready", headers={"Retry-After": "5"})
        return {"status": "ready"}
    if not ready:
        raise Problem(503, "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
                      title="Not ready", checks=checks, headers={"Retry-After": "5"})
    return {"status": "ready", "checks": checks, "workers": workers, "active_pair": _active_pair(session, workers)}


def _queues_served(workers: list[dict]) -> str:
    served = {kind for worker in workers for kind in worker.get("queues", KINDS)}
    missing = [kind for kind in KINDS if kind not in served]
    return "ok" if not missing else f"no live worker serves the {' or '.join(missing)} queue"


def _is_admin(request: Request) -> bool:
    key = request.scope.get("state", {}).get("api_key")  # set by the gate (app/gate.py)
    return key is not None and key.scope == Scope.admin


def _active_pair(session, workers: list[dict]) -> dict | None:
    """The published pair, and which workers still serve another one: a worker switches before its
    next job, so right after a publish an idle worker still serves the previous pair."""
    pair = crud.get_active_pair(session)
    pair_id = pair.id if pair else None
    return {"id": pair_id, "encoder_id": pair.encoder_id if pair else None,
            "workers_on_another_pair": [w.get("worker") for w in workers if w.get("pair_id") != pair_id]}


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as exc:  # any failure means not ready; say which
        return f"unavailable ({type(exc).__name__})"


@router.get("/metrics", include_in_schema=False)
def read_metrics(_: MetricsKey, session: SessionDep, redis: RedisDep, settings: SettingsDep) -> Response:
    """Prometheus metrics of this API process, then the queues' and the live workers' (app.queue_metrics);
    an admin key or a `metrics`-scope key."""
    body = generate_latest() + render_queue_metrics(redis, session, settings.queue_name)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

"""Dependencies as named aliases, so route signatures read like documentation."""
from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

from fastapi import Depends
from redis import Redis
from sqlalchemy.orm import Session

from app.problems import Problem
from common.db.session import new_session
from common.jobs import Queues, backlog, get_queues
from common.settings import Settings, get_settings
from common.storage import Storage, get_storage as build_storage


def get_db() -> Iterator[Session]:
    # Sync on purpose: closing the session may return a connection to the pool (a round trip), which
    # must not run on the event loop.
    with new_session() as session:
        yield session


# The dependencies below only hand out objects made once (cached) and never block, so they are `async`:
# FastAPI runs a plain `def` dependency in the thread pool, and every such hop is a hand-over to a thread
# and back that a request under load queues for. POST /attribute made eleven of them before (issue 8,
# open-loop enqueue tail).
async def current_settings() -> Settings:
    return get_settings()


@lru_cache
def redis_for_url(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)  # connects on first use


async def get_redis(settings: Annotated[Settings, Depends(current_settings)]) -> Redis:
    return redis_for_url(settings.redis_url)


async def get_job_queues(redis: Annotated[Redis, Depends(get_redis)],
                         settings: Annotated[Settings, Depends(current_settings)]) -> Queues:
    return get_queues(redis, settings.queue_name)


def refuse_when_full(queue, limit: int, retry_after_s: int, what: str) -> None:
    """Bounded queues: beyond `limit` waiting jobs, 503 + Retry-After instead of a growing backlog.
    One LLEN; checked before anything is stored."""
    waiting = backlog(queue)
    if waiting >= limit:
        raise Problem(503, f"{waiting} {what} jobs are waiting (limit {limit}); retry in {retry_after_s} s",
                      title="Queue full", headers={"Retry-After": str(retry_after_s)}, reason="queue_full")


async def get_storage(settings: Annotated[Settings, Depends(current_settings)]) -> Storage:
    return build_storage(settings)  # one instance per configuration (common.storage.storage_from)


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(current_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
QueuesDep = Annotated[Queues, Depends(get_job_queues)]
StorageDep = Annotated[Storage, Depends(get_storage)]

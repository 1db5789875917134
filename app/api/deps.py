"""Dependencies as named aliases, so route signatures read like documentation."""
from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

from fastapi import Depends
from redis import Redis
from rq import Queue
from sqlalchemy.orm import Session

from common.db.session import new_session
from common.jobs import get_queue
from common.settings import Settings, get_settings
from common.storage import Storage, get_storage as build_storage


def get_db() -> Iterator[Session]:
    with new_session() as session:
        yield session


@lru_cache
def redis_for_url(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def get_redis(settings: Annotated[Settings, Depends(get_settings)]) -> Redis:
    return redis_for_url(settings.redis_url)


def get_job_queue(redis: Annotated[Redis, Depends(get_redis)],
                  settings: Annotated[Settings, Depends(get_settings)]) -> Queue:
    return get_queue(redis, settings.queue_name)


def get_storage(settings: Annotated[Settings, Depends(get_settings)]) -> Storage:
    return build_storage(settings)


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
QueueDep = Annotated[Queue, Depends(get_job_queue)]
StorageDep = Annotated[Storage, Depends(get_storage)]

"""The job-finished event (docs/design.md §1): whoever moves an attribution job to `done` or `failed`
commits the row first, then publishes `{"job_id", "status"}` on one Redis channel. The row is the
truth; the event only says "look now" (to `?wait`, webhooks, the console). Publishing never fails
the job: a Redis error is logged and waiters find the row at their next safety re-read."""
import json
import logging

from redis import Redis
from redis.exceptions import RedisError

CHANNEL = "attrib:events:job-finished"
log = logging.getLogger(__name__)


def publish_job_finished(redis: Redis, job_id, status) -> None:
    _publish(redis, {"job_id": str(job_id), "status": str(getattr(status, "value", status))})


def publish_import_finished(redis: Redis, import_id) -> None:
    """A bulk import finished (common.imports): wakes webhook deliverers like a finished job does. The
    body has no `job_id`, so `?wait` listeners (parse_job_finished) ignore it."""
    _publish(redis, {"import_id": str(import_id), "status": "finished"})


def _publish(redis: Redis, body: dict) -> None:
    try:
        redis.publish(CHANNEL, json.dumps(body))
    except RedisError as exc:
        log.warning("could not publish %s: %s", body, exc)


def parse_job_finished(data: bytes | str) -> str | None:
    """The job id of a message on CHANNEL, or None if it is not one of ours."""
    try:
        return str(json.loads(data)["job_id"])
    except (ValueError, KeyError, TypeError):
        return None

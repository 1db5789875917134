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
    status = getattr(status, "value", status)
    try:
        redis.publish(CHANNEL, json.dumps({"job_id": str(job_id), "status": str(status)}))
    except RedisError as exc:
        log.warning("could not publish job-finished for %s: %s", job_id, exc)


def publish_import_finished(redis: Redis, import_id) -> None:
    """A bulk import finished (common.imports): wakes webhook deliverers like a finished job does. The
    body has no `job_id`, so `?wait` listeners (parse_job_finished) ignore it."""
    try:
        redis.publish(CHANNEL, json.dumps({"import_id": str(import_id), "status": "finished"}))
    except RedisError as exc:
        log.warning("could not publish import-finished for %s: %s", import_id, exc)


def parse_job_finished(data: bytes | str) -> str | None:
    """The job id of a message on CHANNEL, or None if it is not one of ours."""
    try:
        return str(json.loads(data)["job_id"])
    except (ValueError, KeyError, TypeError):
        return None

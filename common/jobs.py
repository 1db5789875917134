"""Names of the worker's jobs, enqueued by dotted path so the API never imports torch."""
from redis import Redis
from rq import Queue, Retry

EMBED_WORK = "worker.jobs.embed_work"
ATTRIBUTE_IMAGE = "worker.jobs.attribute_image"


def get_queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis)


# Retries are re-enqueued at once: a delayed retry needs RQ's scheduler, which runs as a forked child
# that outlives a SIGKILLed worker; the recovery pass covers slower failures from the database.


def enqueue_embed_work(queue: Queue, work_id: str) -> None:
    # Job ids derive from the database row, so re-enqueueing the same work replaces, not duplicates.
    queue.enqueue(EMBED_WORK, work_id, job_id=f"embed-{work_id}", retry=Retry(max=2),
                  job_timeout=600)


def enqueue_attribution(queue: Queue, job_id: str) -> None:
    queue.enqueue(ATTRIBUTE_IMAGE, job_id, job_id=f"attr-{job_id}", retry=Retry(max=2),
                  job_timeout=300)

# Each worker keeps its heartbeat key alive (TTL: settings.worker_heartbeat_ttl_s) while it holds an index.
WORKER_HEARTBEAT_PREFIX = "attrib:worker:"


def heartbeat_key(queue_name: str, worker_name: str) -> str:
    return f"{WORKER_HEARTBEAT_PREFIX}{queue_name}:{worker_name}"

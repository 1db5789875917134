"""Names of the worker's jobs and the two queues they go to, enqueued by dotted path so the API never
imports torch.

Two queues per deployment (docs/design.md §5): `{queue_name}-attribute`, served first, and
`{queue_name}-embed` for registration embedding, batched (many images per job). A worker listens to
both in that order, so an attribution waits at most for the embedding batch in progress (and the
embedding job yields between forward passes when attributions wait: worker.batch_embed)."""
import json
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis
from rq import Queue, Retry

ATTRIBUTE_IMAGE = "worker.jobs.attribute_image"
EMBED_IMAGES = "worker.jobs.embed_images"
EMBED_WORK = "worker.jobs.embed_work"  # jobs enqueued before batching; still served
ATTRIBUTE, EMBED = "attribute", "embed"
KINDS = (ATTRIBUTE, EMBED)  # priority order


@dataclass(frozen=True)
class Queues:
    """The deployment's queues; `base` (settings.queue_name) also names worker heartbeats."""
    base: str
    attribute: Queue
    embed: Queue

    def by_kind(self, kinds: Sequence[str] = KINDS) -> list[Queue]:
        """Queues of these kinds, always in priority order (attribution first)."""
        return [getattr(self, kind) for kind in KINDS if kind in kinds]


def queue_name(base: str, kind: str) -> str:
    return f"{base}-{kind}"


def get_queues(redis: Redis, base: str) -> Queues:
    return Queues(base, Queue(queue_name(base, ATTRIBUTE), connection=redis),
                  Queue(queue_name(base, EMBED), connection=redis))


def backlog(queue: Queue) -> int:
    """Jobs waiting (not yet taken by a worker): one O(1) LLEN."""
    return int(queue.connection.llen(queue.key))


# Retries are re-enqueued at once: a delayed retry needs RQ's scheduler, which runs as a forked child
# that outlives a SIGKILLed worker; the recovery pass covers slower failures from the database.


def embed_job_id(image_ids: Sequence[int]) -> str:
    """Derived from the image ids, so re-enqueueing the same batch replaces it instead of adding one."""
    digest = hashlib.sha1(",".join(map(str, sorted(image_ids))).encode()).hexdigest()[:16]
    return f"embed-{digest}"


def enqueue_embedding(queue: Queue, image_ids: Sequence[int], *, job_id: str | None = None,
                      at_front: bool = False) -> str:
    """One job embeds these images (ids, never bytes: a retried or duplicated job is safe)."""
    ids = sorted(int(i) for i in image_ids)
    job_id = job_id or embed_job_id(ids)
    queue.enqueue(EMBED_IMAGES, ids, job_id=job_id, retry=Retry(max=2), job_timeout=1800, at_front=at_front)
    return job_id


def enqueue_embed_batches(queue: Queue, image_ids: Sequence[int], per_job: int) -> list[str]:
    """n images -> ceil(n / per_job) jobs, enqueued in one Redis pipeline."""
    ids = sorted(int(i) for i in image_ids)
    batches = [ids[start:start + per_job] for start in range(0, len(ids), per_job)]
    jobs = [Queue.prepare_data(EMBED_IMAGES, args=(batch,), job_id=embed_job_id(batch), retry=Retry(max=2),
                               timeout=1800) for batch in batches]
    if jobs:
        queue.enqueue_many(jobs)
    return [job.job_id for job in jobs]


def enqueue_attribution(queue: Queue, job_id: str) -> None:
    queue.enqueue(ATTRIBUTE_IMAGE, job_id, job_id=f"attr-{job_id}", retry=Retry(max=2),
                  job_timeout=300)

# Each worker keeps its heartbeat key alive (TTL: settings.worker_heartbeat_ttl_s) while it runs (an
# embedding-only worker's beat has no index: index_type None).
WORKER_HEARTBEAT_PREFIX = "attrib:worker:"


def heartbeat_key(queue_name: str, worker_name: str) -> str:
    return f"{WORKER_HEARTBEAT_PREFIX}{queue_name}:{worker_name}"


def holds_index(beat: dict) -> bool:
    """Whether a heartbeat's worker holds an index: an embedding-only worker beats `index_type: None`
    (beats written before that field existed count as holding one)."""
    return beat.get("index_type", "") is not None


def live_heartbeats(redis: Redis, queue_name: str) -> list[dict]:
    """What each live worker says of itself (its heartbeat payload), sorted by key: one SCAN, one MGET."""
    keys = sorted(redis.scan_iter(match=heartbeat_key(queue_name, "*"), count=100))
    return [json.loads(beat) for beat in (redis.mget(keys) if keys else []) if beat]

"""`python -m worker`: load the encoder and index once (no index for an embedding-only worker: see
`_holds_index`), then run many jobs in this process.

RQ's default worker forks per job, which would reload the model every job (and breaks CUDA);
SimpleWorker runs jobs in-process, so the runtime loaded here is shared by every job."""
import argparse
import logging
import os
import socket
import uuid

import torch
from redis import Redis

from common.db.session import new_session
from common.gc_tuning import tune_collector
from common.jobs import ATTRIBUTE, KINDS, Queues, get_queues
from common.logging_config import configure_logging
from common.recovery import RecoveryLock, recover
from common.retention import sweep_expired_jobs
from common.settings import get_settings
from common.storage import get_storage
from worker import batch_embed, jobs
from worker.deliveries import DeliveryLoop, EventWaker
from indexing.snapshots import WriterLock
from worker.heartbeat import Heartbeat, Periodic
from worker.logged_worker import LoggedWorker
from worker.stats import STATS
from worker.runtime import Runtime, get_runtime, set_runtime

log = logging.getLogger("worker")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--name", default=None, help="worker name (default: host-pid-random)")
    parser.add_argument("--queues", default=",".join(KINDS), type=_kinds,
                        help="queues to serve, taken in priority order whatever the order given: "
                             "'attribute' for a dedicated attribution worker, 'embed' for an import "
                             "worker (default: attribute,embed)")
    return parser.parse_args(argv)


def _kinds(value: str) -> list[str]:
    kinds = [kind.strip() for kind in value.split(",") if kind.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"queues are {', '.join(KINDS)}; got {value!r}")
    return kinds


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = get_settings()
    configure_logging(service="worker", log_format=settings.log_format, level=settings.log_level)
    if ATTRIBUTE not in args.queues:
        batch_embed.DECODE_NICE = settings.embed_worker_nice
    torch.set_num_threads(settings.torch_threads)
    holds_index = _holds_index(args.queues, settings)
    with new_session() as session:
        set_runtime(Runtime.load(session, settings, args.device, with_index=holds_index))
    jobs.SERVES_ATTRIBUTION = ATTRIBUTE in args.queues
    redis = Redis.from_url(settings.redis_url)
    queues = get_queues(redis, settings.queue_name)
    name = args.name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    heartbeat = Heartbeat(redis, settings.queue_name, name,
                          lambda: {**get_runtime().describe(), "queues": args.queues, "stats": STATS.snapshot()},
                          ttl_s=settings.worker_heartbeat_ttl_s)
    recovery = Periodic("recovery", heartbeat.interval_s, lambda: _recover(redis, queues, settings, name))
    # One worker per encoder (a Redis lock) writes snapshots; the others pick up a rebuilt base.
    writer = lambda: WriterLock(redis, settings.queue_name, get_runtime().encoder.encoder_id, name,  # noqa: E731
                                ttl_s=int(3 * settings.snapshot_interval_s))
    # Webhook sending, the retention sweep and snapshots run beside the jobs, each on its own thread and schedule.
    deliveries = DeliveryLoop(settings, name)
    side_threads = [recovery, deliveries, EventWaker(settings.redis_url, deliveries),
                    Periodic("retention", settings.retention_sweep_interval_s, lambda: _sweep(settings))]
    if holds_index:  # a worker without an index never takes the snapshot writer's lock
        side_threads.append(Periodic("snapshot", settings.snapshot_interval_s, lambda: get_runtime().snapshot(writer())))
    tune_collector(False, settings.gc_log_slow_ms)  # logged only: a worker replaces its encoder and index
    heartbeat.beat()
    heartbeat.start()
    for thread in side_threads:
        thread.start()
    try:
        LoggedWorker(queues.by_kind(args.queues), connection=redis, name=name).work(
            burst=args.burst, with_scheduler=False, logging_level="WARNING")
    finally:
        for thread in side_threads:
            thread.stop()
        heartbeat.stop()
        if holds_index:
            get_runtime().snapshot(writer(), rebuild=False)


def _holds_index(queues: list[str], settings) -> bool:
    """Workers that serve attributions search, so they hold the index. An embedding-only FAISS worker
    holds none (its in-process codes would only cost memory, a start-up load and a sync per job); on
    Milvus it keeps its store, since the syncs after its jobs keep a shared collection current."""
    return ATTRIBUTE in queues or settings.vector_backend != "faiss"


def _recover(redis: Redis, queues: Queues, settings, name: str) -> None:
    """One pass at a time across all workers; the lock outlives a slow pass by a margin."""
    with RecoveryLock(redis, settings.queue_name, name, ttl_s=60) as held, new_session() as session:
        if held:
            recover(session, redis, queues, get_storage(settings),
                    max_attempts=settings.job_max_attempts, grace_s=settings.recovery_grace_s,
                    images_per_job=settings.embed_job_images)


def _sweep(settings) -> None:
    with new_session() as session:
        sweep_expired_jobs(session, get_storage(settings), retention_days=settings.job_retention_days)


if __name__ == "__main__":
    main()

"""`python -m worker`: load the encoder and index once, then run many jobs in this process.

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
from common.jobs import get_queue
from common.logging_config import configure_logging
from common.recovery import recover
from common.retention import sweep_expired_jobs
from common.settings import get_settings
from common.storage import get_storage
from worker.deliveries import DeliveryLoop
from indexing.snapshots import WriterLock
from worker.heartbeat import Heartbeat, Periodic
from worker.logged_worker import LoggedWorker
from worker.runtime import Runtime, get_runtime, set_runtime

log = logging.getLogger("worker")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--name", default=None, help="worker name (default: host-pid-random)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = get_settings()
    configure_logging(service="worker", log_format=settings.log_format, level=settings.log_level)
    torch.set_num_threads(settings.torch_threads)
    with new_session() as session:
        set_runtime(Runtime.load(session, settings, args.device))
    redis = Redis.from_url(settings.redis_url)
    queue = get_queue(redis, settings.queue_name)
    name = args.name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    heartbeat = Heartbeat(redis, settings.queue_name, name, lambda: get_runtime().describe(),
                          ttl_s=settings.worker_heartbeat_ttl_s)
    recovery = Periodic("recovery", heartbeat.interval_s, lambda: _recover(redis, queue, settings))
    # One worker per encoder (a Redis lock) writes snapshots; the others pick up a rebuilt base.
    writer = lambda: WriterLock(redis, settings.queue_name, get_runtime().encoder.encoder_id, name,  # noqa: E731
                                ttl_s=int(3 * settings.snapshot_interval_s))
    # Webhook sending, the retention sweep and snapshots run beside the jobs, each on its own thread and schedule.
    side_threads = [recovery, DeliveryLoop(settings, name),
                    Periodic("retention", settings.retention_sweep_interval_s, lambda: _sweep(settings)),
                    Periodic("snapshot", settings.snapshot_interval_s, lambda: get_runtime().snapshot(writer()))]
    heartbeat.beat()
    heartbeat.start()
    for thread in side_threads:
        thread.start()
    try:
        LoggedWorker([queue], connection=redis, name=name).work(burst=args.burst, with_scheduler=False,
                                                              logging_level="WARNING")
    finally:
        for thread in side_threads:
            thread.stop()
        heartbeat.stop()
        get_runtime().snapshot(writer(), rebuild=False)


def _recover(redis: Redis, queue, settings) -> None:
    with new_session() as session:
        recover(session, redis, queue, get_storage(settings), max_attempts=settings.job_max_attempts,
                grace_s=settings.recovery_grace_s)


def _sweep(settings) -> None:
    with new_session() as session:
        sweep_expired_jobs(session, get_storage(settings), retention_days=settings.job_retention_days)


if __name__ == "__main__":
    main()

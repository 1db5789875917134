"""Embedding a batch of registered images: the body of the `embed_images` job.

Read and decode run ahead of the forward pass (core.pipeline); vectors are committed every
COMMIT_EVERY images, so a killed worker keeps what it finished and a retry embeds only what is still pending.
Those writes run on a thread of their own while the next images go through the model: written inline,
they held the forward pass for ~1.4 ms an image during a 2,000-image bulk import (the job's phases
timed by hand during `python -m bench.ingest`; that timing is not part of the code).
Between forward batches the job yields to waiting attributions: it stops, puts the rest of its images
back at the front of the embedding queue, and returns, so the worker (which takes the attribution
queue first) runs them. An attribution therefore waits for at most one forward batch."""
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db.models import ImageState, SourceImage, Work
from common.db.session import new_session
from common.settings import Settings
from common.storage import Storage
from core.encoder import Encoder
from core import pipeline
from core.pipeline import Feeder
from indexing.embedding import embed_source_images, write_vectors_of_ids

log = logging.getLogger(__name__)
# Vectors are committed about this often (and whenever the job yields or ends): a killed worker loses at
# most this many images' work, and small forward batches do not pay one commit each.
COMMIT_EVERY = 16


@dataclass
class Outcome:
    embedded: int = 0
    failed: int = 0
    remaining: list[int] = field(default_factory=list)  # not done because the job yielded
    work_ids: set[uuid.UUID] = field(default_factory=set)


def pending_rows(session: Session, image_ids: list[int]) -> list[SourceImage]:
    """Of these images, those still pending in a live work (a retried job skips what is done)."""
    return list(session.scalars(select(SourceImage).join(Work).where(
        SourceImage.id.in_(image_ids), SourceImage.state == ImageState.pending, Work.deleted_at.is_(None))
        .order_by(SourceImage.id)))


def embed_pending(session: Session, encoder: Encoder, feeder: Feeder, storage: Storage,
                  image_ids: list[int], batch_size: int, should_yield: Callable[[], bool]) -> Outcome:
    pending = pending_rows(session, image_ids)
    outcome = Outcome(work_ids={row.work_id for row in pending})
    # An image whose earlier attempt took a worker down goes the careful way, alone (indexing.embedding:
    # attempt counts, a budgeted decode, failed for good after max_image_attempts).
    suspects = [row for row in pending if row.attempts > 0]
    rows = {row.id: row for row in pending if row.attempts == 0}  # before the careful pass resets attempts
    if suspects:
        outcome.embedded += embed_source_images(session, encoder, storage, suspects, 1)
        session.commit()
    for row in rows.values():  # counted and committed before the risky part, as in indexing.embedding
        row.attempts = 1
    session.commit()
    items = [(row.id, _loader(storage, row.storage_key)) for row in rows.values()]
    done: set[int] = set()
    unwritten = _Unwritten(encoder.encoder_id)
    batches = feeder.batches(items, batch_size)
    try:
        for batch in batches:
            _store_batch(encoder, batch, outcome, unwritten)
            done.update(batch.ids, batch.failed)
            if unwritten.images >= COMMIT_EVERY:
                unwritten.write()
            if len(done) < len(rows) and should_yield():
                outcome.remaining = [i for i in rows if i not in done]
                for image_id in outcome.remaining:  # not tried: no attempt is held against them
                    rows[image_id].attempts = 0
                break
    finally:
        batches.close()
        unwritten.write()
        unwritten.wait()  # the job ends (and the index syncs) only after its vectors committed
        session.commit()
    return outcome


def _loader(storage: Storage, key: str) -> Callable[[], bytes]:
    return lambda: storage.get(key)


# One thread per worker process writes vectors; a worker runs one job at a time.
_WRITER = ThreadPoolExecutor(1, thread_name_prefix="vector-writer")


class _Unwritten:
    """Vectors and failures since the last write, handed together to the writer thread, which commits
    them in a session of its own (the job's session holds the rows, and is not shared across threads).
    At most one write is in flight: the next waits for it, so a killed worker loses at most two writes'
    images, which stay pending and are embedded again. A failed write fails the job, as one inline did."""

    def __init__(self, encoder_id: str):
        self.encoder_id, self.ids, self.vectors, self.failed = encoder_id, [], [], {}
        self.in_flight: Future | None = None

    @property
    def images(self) -> int:
        return len(self.ids) + len(self.failed)

    def write(self) -> None:
        if not self.images:
            return
        ids, vectors, failed = self.ids, self.vectors, self.failed
        self.ids, self.vectors, self.failed = [], [], {}  # taken even if writing fails: never written twice
        self.wait()
        self.in_flight = _WRITER.submit(_write, ids, np.concatenate(vectors) if vectors else None,
                                        self.encoder_id, failed)

    def wait(self) -> None:
        in_flight, self.in_flight = self.in_flight, None
        if in_flight is not None:
            in_flight.result()


def _write(ids: list[int], vectors: np.ndarray | None, encoder_id: str, failed: dict[int, str]) -> None:
    with new_session() as session:
        # A failed image may have had a vector from an earlier encoder: every index drops it (change log).
        write_vectors_of_ids(session, ids, vectors, encoder_id, failed)
        session.commit()


def _store_batch(encoder: Encoder, batch, outcome: Outcome, unwritten: _Unwritten) -> None:
    for image_id, reason in batch.failed.items():
        log.warning("image %s failed: %s", image_id, reason)
    unwritten.failed.update(batch.failed)
    if batch.ids:
        unwritten.vectors.append(encoder.embed_tensor(batch.tensor))
        unwritten.ids += batch.ids
    outcome.embedded += len(batch.ids)
    outcome.failed += len(batch.failed)


# Set by `python -m worker` for a worker that serves only the embedding queue (ATTRIB_EMBED_WORKER_NICE): its
# decode threads, which read ahead of the forward pass and so have slack, give way on shared cores to the
# API and the attribution worker. The forward pass keeps its priority: time it loses is not made up later.
DECODE_NICE = 0


def make_feeder(encoder: Encoder, settings: Settings, device: str) -> Feeder:
    return pipeline.make_feeder(encoder.preprocess, device, settings.decode_workers, settings.gpu_decode,
                                DECODE_NICE)


def forward_batch_size(settings: Settings, device: str) -> int:
    return settings.gpu_embed_batch_size if device.startswith("cuda") else settings.embed_batch_size

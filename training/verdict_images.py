"""Images for the unsupervised half of `retrain --verdicts` (method.md §2 on the mapper's space).

Verdicts train the maps from stored embeddings alone; where images exist the fit also applies the
method's own objective (alignment + Infomax) to them. Which images: registered source images of live
works (through the source map) and query images kept because their clients allowed training use
(through the query map): the verdicts' own copies (`verdicts.query_storage_key`, which outlive jobs) and
opted-in jobs' files, one per query content hash. At most `limit` of them, up to half queries (the
synthetic side is the rarer one), drawn with the seed; a key that is gone or no longer decodes is skipped.

Each image gets two augmentations (training.augment: the training recipe, at the encoder's own input
size) embedded ONCE by the frozen serving encoder, so the fit's steps are matrix products on cached
features, as the verdict term is. Bytes come through the storage interface (common.storage), so the
trainer may run on a host that shares no filesystem with the API."""
import random
from dataclasses import dataclass, replace

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db.models import AttributionJob, SourceImage, Verdict, Work
from common.images import ImageRejected, decode_rgb
from core.encoder import Encoder
from training.augment import view_transform
from training.config import TrainConfig


@dataclass
class ImageViews:
    """Serving-encoder features of two augmentations of each image, row-aligned."""
    view_1: np.ndarray  # [n, d] float32, L2-normalised
    view_2: np.ndarray
    is_query: np.ndarray  # [n] bool: query images go through the query map, sources through the source map

    def __len__(self) -> int:
        return len(self.is_query)

    @property
    def counts(self) -> dict[str, int]:
        return {"source": int((~self.is_query).sum()), "query": int(self.is_query.sum())}


def source_image_keys(session: Session, limit: int, rng: np.random.Generator) -> list[str]:
    """Up to `limit` storage keys of live works' images: ids are listed (cheap), keys read for the sample."""
    ids = session.scalars(select(SourceImage.id).join(Work).where(Work.deleted_at.is_(None))
                          .order_by(SourceImage.id)).all()
    chosen = sorted(rng.choice(len(ids), size=min(limit, len(ids)), replace=False).tolist()) if ids else []
    keys = dict(session.execute(select(SourceImage.id, SourceImage.storage_key)
                                .where(SourceImage.id.in_([ids[i] for i in chosen]))).all()) if chosen else {}
    return [keys[ids[i]] for i in chosen]


def query_image_keys(session: Session, limit: int, rng: np.random.Generator) -> list[str]:
    """Up to `limit` kept query images, one per content hash (a verdict's copy before the job's file)."""
    by_hash = dict(session.execute(select(AttributionJob.query_sha256, AttributionJob.storage_key)
                                   .where(AttributionJob.training_use.is_(True))).all())
    by_hash |= dict(session.execute(select(Verdict.query_sha256, Verdict.query_storage_key)
                                    .where(Verdict.query_storage_key.is_not(None))).all())
    hashes = sorted(by_hash)
    return [by_hash[hashes[i]] for i in sorted(rng.choice(len(hashes), size=min(limit, len(hashes)),
                                                           replace=False).tolist())] if hashes else []


def pick_image_keys(session: Session, limit: int, seed: int = 0) -> list[tuple[str, bool]]:
    """(storage key, is_query): up to half queries, sources fill the rest (and queries what sources lack)."""
    if limit <= 0:
        return []
    rng = np.random.default_rng(seed)
    queries = query_image_keys(session, limit, rng)
    sources = source_image_keys(session, limit - min(len(queries), limit // 2), rng)
    queries = queries[:limit - len(sources)]
    return [(k, False) for k in sources] + [(k, True) for k in queries]


def load_image_views(storage, encoder: Encoder, keys: list[tuple[str, bool]], seed: int = 0,
                     batch_size: int = 16) -> ImageViews | None:
    """Two augmented views of the images at `keys` (pick_image_keys; read after the session that listed
    them is closed) under the frozen `encoder`; None with fewer than 2 readable images (a contrastive
    batch needs negatives): the fit then uses verdicts alone."""
    images, is_query = [], []
    side = 2 * encoder.preprocess.size  # room for the random crops; 256 full-size photos would take gigabytes
    for key, query in keys:
        try:
            image = decode_rgb(storage.get(key), draft_size=(side, side))
        except (OSError, ImageRejected):  # deleted since it was listed, never stored, or no longer decodes
            continue
        image.thumbnail((side, side))
        images.append(image)
        is_query.append(query)
    if len(images) < 2:
        return None
    transform = view_transform(replace(TrainConfig(), image_size=encoder.preprocess.size), encoder.preprocess)
    state = random.getstate()
    random.seed(seed)  # torchvision draws from torch's generator, the extra ops from `random`
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        views = [_embed_views(encoder, images, np.asarray(is_query), transform, batch_size) for _ in range(2)]
    random.setstate(state)
    return ImageViews(views[0], views[1], np.asarray(is_query, bool))


def _embed_views(encoder: Encoder, images, is_query: np.ndarray, transform, batch_size: int) -> np.ndarray:
    """One augmentation of every image; queries through the encoder's query head when it has one."""
    out = np.zeros((len(images), encoder.dim), np.float32)
    for role in (False, True):
        rows = np.flatnonzero(is_query == role)
        model = encoder.query_model if role else None
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            batch = torch.stack([transform(images[i]) for i in chunk])
            out[chunk] = encoder.embed_tensor(batch, model)
    return out

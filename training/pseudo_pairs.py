"""Pseudo-pairs: labels for calibration without labels, drawn from the registered works' stored vectors.

A query is a strongly augmented re-embedding of a sampled source image (training's view recipe:
crops, colour, grey, blur, posterise, edge sketch, solarise); its candidates are the stored vectors
(the `embeddings` table, nothing else decoded); its truth is the sampled image's work. When the work has
other images, the query's own stored vector is left out (a generated image is a new depiction, not a
copy); a work of one image keeps it, so there is still a truth to find.

An augmented copy is still far easier than a generated image (on the cross-context benchmark its own
work comes first ~90% of the time against ~70% for real queries), and a fit on it alone is
overconfident. So each pseudo-query then drifts toward the centroid of the registered vectors (the
"generic image" direction a degraded or restyled depiction falls toward) until its best score equals
a top-1 score drawn from recent real queries of this encoder (the `matches` table: unlabelled traffic,
no truth needed). With no traffic yet the queries stay as they are, and `fitted_on` says so.

Cost, bounded whatever the registry size N: listing N (image, work) ids, reading at most `pool`
vectors, decoding and embedding `queries` images, one [queries x pool] product. Above `pool` images the
candidates are a uniform sample plus every image of the sampled works (scores of a million-image index
would be a little higher at the top, so shares fitted on a sample lean slightly confident)."""
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from core.encoder import Encoder
from training.augment import view_ops
from training.candidates import CandidateTable, candidates_from_scores
from training.config import TrainConfig

QUERIES = 512
POOL = 20_000
LEFT_OUT = -10.0  # finite, below any cosine: an infinite score would turn the fit's gradients NaN


@dataclass
class Registry:
    vectors: np.ndarray  # [N, d] stored, L2-normalised
    works: np.ndarray    # [N] work label per row


def augmented_queries(encoder: Encoder, images: list[Image.Image], seed: int = 0) -> np.ndarray:
    random.seed(seed)
    torch.manual_seed(seed)
    augment = T.Compose(view_ops(TrainConfig(), encoder.preprocess.size))
    return encoder.embed([augment(image.convert("RGB")) for image in images])


def pseudo_pair_candidates(queries: np.ndarray, query_rows: list[int], registry: Registry,
                           hits: int) -> CandidateTable:
    """queries [n, d] made from registry rows `query_rows` -> their candidates, truth = the row's work."""
    scores = queries @ registry.vectors.T
    sizes: dict = {}
    for work in registry.works.tolist():
        sizes[work] = sizes.get(work, 0) + 1
    truth = registry.works[query_rows]
    for i, row in enumerate(query_rows):
        if sizes[truth[i]] > 1:
            scores[i, row] = LEFT_OUT
    table = candidates_from_scores(scores, registry.works, truth, hits)
    table.works = np.where(table.scores <= LEFT_OUT, "", table.works)  # a left-out row is no candidate
    return table


def drift_to_traffic(queries: np.ndarray, registry: Registry, traffic_top1: np.ndarray | None,
                     seed: int = 0, steps: int = 30) -> np.ndarray:
    """Per query, q' = normalise(q + lambda * centroid) with lambda >= 0 found by bisection so that q's best
    score over the registry matches a drawn traffic top-1 score (queries already below it stay)."""
    if traffic_top1 is None or len(traffic_top1) == 0:
        return queries
    centroid = registry.vectors.mean(axis=0)
    base, toward = queries @ registry.vectors.T, registry.vectors @ centroid  # [n, N], [N]
    along, length = queries @ centroid, float(centroid @ centroid)

    def best(lam: np.ndarray) -> np.ndarray:
        norm = np.sqrt(1 + 2 * lam * along + lam ** 2 * length)
        return ((base + lam[:, None] * toward) / norm[:, None]).max(axis=1)
    target = np.random.default_rng(seed).choice(np.asarray(traffic_top1, np.float64), len(queries))
    low, high = np.zeros(len(queries)), np.full(len(queries), 8.0)
    for _ in range(steps):
        mid = (low + high) / 2
        above = best(mid) > target
        low, high = np.where(above, mid, low), np.where(above, high, mid)
    moved = queries + low[:, None] * centroid
    return (moved / np.linalg.norm(moved, axis=1, keepdims=True)).astype(np.float32)


def sample_rows(works: list, queries: int, pool: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """(query rows, pool rows): `queries` rows at random; the pool is every row when there are at most
    `pool`, else a uniform sample plus every row of the sampled works (so each query keeps its truth)."""
    rng = random.Random(seed)
    rows = list(range(len(works)))
    query_rows = sorted(rng.sample(rows, min(queries, len(rows))))
    if len(rows) <= pool:
        return query_rows, rows
    wanted = {works[r] for r in query_rows}
    pool_rows = set(rng.sample(rows, pool)) | {r for r in rows if works[r] in wanted}
    return query_rows, sorted(pool_rows)

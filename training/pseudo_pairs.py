"""Pseudo-pairs: labels for calibration without labels, drawn from the registered works' stored vectors.

A query is a strongly augmented re-embedding of a sampled source image (training's view recipe:
crops, colour, grey, blur, posterise, edge sketch, solarise); its candidates are the stored vectors
(the `embeddings` table, nothing else decoded); its truth is the sampled image's work. When the work has
other images, the query's own stored vector is left out (a generated image is a new depiction, not a
copy); a work of one image keeps it, so there is still a truth to find.

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

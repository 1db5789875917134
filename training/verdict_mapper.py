"""Fit AbC's two linear maps (training.supervised.LinearPair) on reviewers' verdicts.

Differences from the benchmark baseline (`fit_linear_pair`), each for a service reason:
- Negatives are the catalogue, not only the batch: every step scores each query against one image of
  up to `negatives` works (all confirmed works of the batch, the batch's rejected works, then random
  others), so a work nobody reviewed still pushes back and is not crowded out.
- Rejected works of a query are always among its negatives (hard negatives).
- A pull towards the identity (`identity_weight * |W - I|^2` on both maps) keeps works without verdicts
  where the zero-shot backbone put them; the gate checks that they did not get worse."""
import uuid
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from training.supervised import LinearPair
from training.verdicts import VerdictQuery


@dataclass
class MapperConfig:
    steps: int = 300
    batch: int = 64
    negatives: int = 256
    tau: float = 0.07
    lr: float = 1e-3
    identity_weight: float = 1.0
    seed: int = 0


def confirmed_pairs(queries: list[VerdictQuery], works: list[uuid.UUID]) -> list[tuple[int, int, list[int]]]:
    """(query index, confirmed work index, rejected work indices) for every confirmed verdict."""
    position = {w: i for i, w in enumerate(works)}
    return [(qi, position[w], [position[r] for r in q.rejected if r in position])
            for qi, q in enumerate(queries) for w in sorted(q.confirmed, key=str) if w in position]


def fit_verdict_mapper(queries: list[VerdictQuery], work_vectors: dict[uuid.UUID, np.ndarray],
                       config: MapperConfig = MapperConfig()) -> LinearPair:
    works = sorted(work_vectors, key=str)
    pairs = confirmed_pairs(queries, works)
    if len({w for _, w, _ in pairs}) < 2:
        raise ValueError("the verdict mapper needs confirmed matches on at least 2 works")
    dim = next(iter(work_vectors.values())).shape[1]
    model, rng = LinearPair(dim), np.random.default_rng(config.seed)
    q_all = torch.from_numpy(np.stack([q.vector for q in queries]))
    identity = torch.eye(dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    for _ in range(config.steps):
        batch = [pairs[i] for i in rng.choice(len(pairs), size=min(config.batch, len(pairs)), replace=False)]
        candidates = _candidate_works(batch, len(works), config.negatives, rng)
        exemplars = torch.from_numpy(np.stack([_one_image(work_vectors[works[w]], rng) for w in candidates]))
        column = {w: i for i, w in enumerate(candidates)}
        queries_t = q_all[[qi for qi, _, _ in batch]]
        logits = F.normalize(model.synth(queries_t), dim=1) @ F.normalize(model.real(exemplars), dim=1).T
        labels = torch.tensor([column[w] for _, w, _ in batch])
        pull = ((model.real.weight - identity) ** 2).sum() + ((model.synth.weight - identity) ** 2).sum()
        loss = F.cross_entropy(logits / config.tau, labels) + config.identity_weight * pull
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _candidate_works(batch, n_works: int, negatives: int, rng: np.random.Generator) -> list[int]:
    chosen = list(dict.fromkeys([w for _, w, _ in batch] + [r for _, _, rs in batch for r in rs]))
    others = [w for w in rng.permutation(n_works).tolist() if w not in set(chosen)]
    return chosen + others[:max(0, negatives - len(chosen))]


def _one_image(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return vectors[rng.integers(len(vectors))]


def maps_of(model: LinearPair) -> dict[str, np.ndarray]:
    return {"real": model.real.weight.detach().numpy().copy(), "synth": model.synth.weight.detach().numpy().copy()}

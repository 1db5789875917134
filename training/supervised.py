"""The supervised AbC-style baseline (method.md §3): two identity-initialised linear maps on frozen
features, one for real images (exemplars, distractors) and one for synthetic ones (queries), trained
contrastively on (synthetic, exemplar) pairs so each synthetic image is closest to its own exemplars.

Each batch holds one (query, exemplar) pair per distinct concept, so in-batch negatives are never
another view of the same concept."""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training.features import SetFeatures


class LinearPair(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.real = nn.Linear(dim, dim, bias=False)
        self.synth = nn.Linear(dim, dim, bias=False)
        for layer in (self.real, self.synth):
            nn.init.eye_(layer.weight)

    def map(self, features: np.ndarray, kind: str) -> np.ndarray:
        layer = self.real if kind == "real" else self.synth
        with torch.no_grad():
            out = F.normalize(layer(torch.from_numpy(features).float()), dim=1)
        return out.numpy().astype(np.float32)


def paired_concepts(train: SetFeatures) -> list[str]:
    return [c for c in train.exemplars if len(train.exemplars[c]) and any(len(q) for q in train.queries[c].values())]


def sample_batch(train: SetFeatures, concepts: list[str], batch: int, rng: np.random.Generator):
    chosen = rng.choice(concepts, size=min(batch, len(concepts)), replace=False)
    queries, exemplars = [], []
    for concept in chosen:
        pool = np.concatenate([q for q in train.queries[concept].values() if len(q)])
        queries.append(pool[rng.integers(len(pool))])
        exemplars.append(train.exemplars[concept][rng.integers(len(train.exemplars[concept]))])
    return torch.from_numpy(np.stack(queries)), torch.from_numpy(np.stack(exemplars))


def fit_linear_pair(train: SetFeatures, steps: int = 300, batch: int = 64, tau: float = 0.07,
                    lr: float = 1e-3, seed: int = 0) -> LinearPair:
    concepts = paired_concepts(train)
    if len(concepts) < 2:
        raise ValueError("the supervised baseline needs (synthetic, exemplar) pairs from >= 2 concepts")
    dim = next(iter(train.exemplars.values())).shape[1]
    model, rng = LinearPair(dim), np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        q, e = sample_batch(train, concepts, batch, rng)
        logits = F.normalize(model.synth(q), dim=1) @ F.normalize(model.real(e), dim=1).T / tau
        labels = torch.arange(len(q))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def apply_linear_pair(model: LinearPair, test: SetFeatures) -> SetFeatures:
    """Real images through the real map, synthetic queries through the synthetic map."""
    return SetFeatures(
        exemplars={c: model.map(e, "real") for c, e in test.exemplars.items()},
        queries={c: {t: model.map(q, "synth") for t, q in by_type.items()} for c, by_type in test.queries.items()},
        distractors=model.map(test.distractors, "real") if len(test.distractors) else test.distractors,
    )

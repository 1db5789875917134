"""Feature extraction for evaluation, kept apart from scoring: (encoder, files) -> L2-normalised rows.

Features are cached in memory per (encoder_id, file), so comparing encoders on one set, or scoring
several query types, embeds every file once per encoder."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from core.encoder import Encoder
from training.eval_data import EvalSet


class FeatureCache:
    def __init__(self):
        self._rows: dict[tuple[str, str], np.ndarray] = {}

    def save(self, path: str | Path) -> None:
        """One .npz of every row, so a benchmark re-run embeds nothing it has seen."""
        keys = list(self._rows)
        np.savez(path, keys=np.array([f"{e}\t{p}" for e, p in keys]),
                 rows=np.stack([self._rows[k] for k in keys]) if keys else np.zeros((0, 0), np.float32))

    @classmethod
    def load(cls, path: str | Path) -> "FeatureCache":
        cache = cls()
        if Path(path).is_file():
            data = np.load(path)
            for key, row in zip(data["keys"].tolist(), data["rows"]):
                cache._rows[tuple(key.split("\t", 1))] = row
        return cache

    def embed_paths(self, encoder: Encoder, paths: list[Path], batch_size: int = 16,
                    desc: str = "embed", role: str = "source") -> np.ndarray:
        """[n, dim] float32 in `paths` order; only files not seen with this encoder are embedded.
        Queries take `role="query"` (an asymmetric encoder maps them apart from registered images)."""
        name = f"{encoder.encoder_id}#query" if role == "query" and encoder.asymmetric else encoder.encoder_id
        missing = list(dict.fromkeys(str(p) for p in paths if (name, str(p)) not in self._rows))
        for start in tqdm(range(0, len(missing), batch_size), desc=f"{desc} [{name}]",
                          unit="batch", disable=not missing):
            chunk = missing[start:start + batch_size]
            for path, row in zip(chunk, encoder.embed([open_rgb(p) for p in chunk], batch_size, role)):
                self._rows[(name, path)] = row
        if not paths:
            return np.zeros((0, encoder.dim), np.float32)
        return np.stack([self._rows[(name, str(p))] for p in paths])


def open_rgb(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


@dataclass
class SetFeatures:
    """An EvalSet's features under one encoder."""
    exemplars: dict[str, np.ndarray]
    queries: dict[str, dict[str, np.ndarray]]
    distractors: np.ndarray


def extract_set_features(encoder: Encoder, eval_set: EvalSet, cache: FeatureCache,
                         distractor_features: np.ndarray | None = None) -> SetFeatures:
    skip = set() if distractor_features is None else set(eval_set.distractors)
    cache.embed_paths(encoder, [p for p in eval_set.all_paths() if p not in skip])  # one progress bar
    exemplars = {c: cache.embed_paths(encoder, ps) for c, ps in eval_set.exemplars.items()}
    queries = {c: {t: cache.embed_paths(encoder, ps, role="query") for t, ps in by_type.items()}
               for c, by_type in eval_set.queries.items()}
    distractors = distractor_features if distractor_features is not None else \
        cache.embed_paths(encoder, eval_set.distractors)
    return SetFeatures(exemplars, queries, np.asarray(distractors, np.float32))

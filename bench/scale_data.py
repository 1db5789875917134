"""Vectors for the scale benchmark that behave like real ones (issue 8, "How it is measured").

Real: Lite0 features of every image at hand (the cross-context set: DreamBooth exemplars, its
renderings, scikit-image and Debian distractors; plus every DreamBooth photo), cached in
bench/out/scale/. Padding: samples from a mixture fitted to the real features, one Gaussian per
k-means cluster with that cluster's empirical covariance (centre + a random combination of its
members' residuals), then L2-normalised. Never isotropic noise: such vectors never enter a real
query's top 10, so any index would look perfect."""
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import list_images
from training.eval_data import read_folder_set

DREAMBOOTH_DIRS = [Path("/work/shared/data/dreambooth"), Path("demo/data/dreambooth")]


@dataclass
class RealFeatures:
    base: np.ndarray  # [n, d] the registered exemplars (first, in subject order) and the distractors
    extra: np.ndarray  # [e, d] other real images of the subjects (traffic half, DreamBooth photos): they
    # shape the padding model but stay out of the index, where they would be unlabelled copies of a work
    queries: np.ndarray  # [q, d] the cross-context set's evaluation queries (never in the base)
    query_subject: np.ndarray  # [q] index into `subjects`
    exemplar_rows: np.ndarray  # [s] row of each subject's exemplar in `base`
    subjects: list[str]


def collect_paths(crossdomain: Path, max_distractors: int = 0) -> tuple[list[Path], list[Path], list[Path], list[str], list[str]]:
    """(base paths, extra paths, query paths, query subjects, subjects); duplicates by content dropped."""
    eval_set = read_folder_set(crossdomain)
    if 0 < max_distractors < len(eval_set.distractors):
        eval_set.distractors = sorted(random.Random(0).sample(eval_set.distractors, max_distractors))
    subjects = sorted(eval_set.exemplars)
    exemplars = [eval_set.exemplars[s][0] for s in subjects]
    queries = [(p, s) for s in subjects for paths in eval_set.queries[s].values() for p in paths]
    extra = list_images(crossdomain / "traffic") + [p for d in DREAMBOOTH_DIRS if d.is_dir()
                                                     for p in sorted(d.rglob("*.jpg"))]
    seen: set[str] = set()
    base = _unique(exemplars + list(eval_set.distractors), seen)
    return base, _unique(extra, seen), [p for p, _ in queries], [s for _, s in queries], subjects


def held_out_queries(crossdomain: Path, real: RealFeatures) -> tuple[np.ndarray, np.ndarray]:
    """(features [h, d], subject index [h]) of the cross-context set's traffic half: labelled queries that
    no search setting was chosen on (those were tuned on the evaluation half, `real.queries`). Their
    features are already in `real.extra`, first, in `collect_paths`'s order."""
    extra = collect_paths(crossdomain)[1]
    labels = json.loads((crossdomain / "traffic_labels.json").read_text())
    rows = [(i, real.subjects.index(labels[p.name]["subject"])) for i, p in enumerate(extra)
            if p.parent.name == "traffic" and labels.get(p.name, {}).get("subject") in real.subjects]
    if len(extra) != len(real.extra) or not rows:
        raise ValueError(f"{crossdomain} does not match the cached features (make them again)")
    return real.extra[[i for i, _ in rows]], np.array([s for _, s in rows])


def _unique(paths: list[Path], seen: set[str]) -> list[Path]:
    out = []
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(path)
    return out


def embed_paths(paths: list[Path], batch: int = 32) -> np.ndarray:
    from core.encoder import load_encoder
    encoder = load_encoder("builtin:efficientnet-lite0")
    out = []
    for start in range(0, len(paths), batch):
        images = [Image.open(p).convert("RGB") for p in paths[start:start + batch]]
        out.append(encoder.embed(images, batch_size=batch))
    return np.concatenate(out).astype(np.float32)


def real_features(crossdomain: Path, cache: Path, max_distractors: int = 0) -> RealFeatures:
    if not cache.exists():
        base, extra, queries, query_subjects, subjects = collect_paths(crossdomain, max_distractors)
        features = embed_paths(base + extra + queries)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, base=features[:len(base)], extra=features[len(base):len(base) + len(extra)],
                 queries=features[len(base) + len(extra):],
                 query_subject=np.array([subjects.index(s) for s in query_subjects]),
                 exemplar_rows=np.arange(len(subjects)), subjects=np.array(subjects))
    with np.load(cache) as f:
        return RealFeatures(f["base"], f["extra"], f["queries"], f["query_subject"], f["exemplar_rows"],
                            f["subjects"].tolist())


@dataclass
class Mixture:
    """One Gaussian per k-means cluster, with the cluster's own covariance (rank <= members - 1)."""
    centres: np.ndarray
    members: list[np.ndarray]  # residuals of each cluster's members
    weights: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, k: int = 64, iters: int = 20, seed: int = 0) -> "Mixture":
        rng = np.random.default_rng(seed)
        centres = x[rng.choice(len(x), k, replace=False)]
        for _ in range(iters):
            assign = np.argmax(x @ centres.T, axis=1)  # spherical k-means on unit vectors
            centres = np.stack([x[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)])
        keep = [j for j in range(k) if (assign == j).sum() >= 2]
        members = [x[assign == j] - centres[j] for j in keep]
        weights = np.array([len(m) for m in members], np.float64)
        return cls(centres[keep], members, weights / weights.sum())

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cluster = rng.choice(len(self.weights), n, p=self.weights)
        out = np.empty((n, self.centres.shape[1]), np.float32)
        for j in np.unique(cluster):
            rows = np.flatnonzero(cluster == j)
            residuals = self.members[j]
            w = rng.standard_normal((len(rows), len(residuals))).astype(np.float32)
            out[rows] = self.centres[j] + w @ residuals / np.sqrt(len(residuals) - 1)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def padded_base(real: np.ndarray, n: int, path: Path, fit_on: np.ndarray | None = None, chunk: int = 50_000,
                seed: int = 0) -> np.ndarray:
    """The real vectors followed by samples of a mixture fitted to `fit_on` (default: them) up to n rows,
    as a float32 memmap written in chunks (1M x 1280 is 5 GB: it never has to be in memory at once).
    Reused when already written: the file is written under another name and renamed when complete, so
    a run killed while writing it leaves no file of the right size with zero rows in it (the memmap is
    sized up front, so the size alone said nothing; a bench run on such a file measured zero vectors)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size == n * real.shape[1] * 4:
        return np.memmap(path, np.float32, "r", shape=(n, real.shape[1]))
    partial = path.with_name(path.name + ".partial")
    out = np.memmap(partial, np.float32, "w+", shape=(n, real.shape[1]))
    out[:min(n, len(real))] = real[:n]
    mixture, rng = Mixture.fit(real if fit_on is None else fit_on), np.random.default_rng(seed)
    for start in range(len(real), n, chunk):
        stop = min(n, start + chunk)
        out[start:stop] = mixture.sample(stop - start, rng)
    out.flush()
    del out
    partial.replace(path)
    return np.memmap(path, np.float32, "r", shape=(n, real.shape[1]))


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 100_000) -> np.ndarray:
    """Brute-force inner-product top k (the ground truth), reading the base in chunks."""
    return top_k_of_chunks(((start, np.asarray(base[start:start + chunk])) for start in range(0, len(base), chunk)),
                           queries, k)


def top_k_of_chunks(chunks, queries: np.ndarray, k: int) -> np.ndarray:
    """The same over (first row, vectors) chunks, for a base that is never held whole (bench.scale_10m)."""
    best_ids = np.zeros((len(queries), 0), np.int64)
    best_scores = np.zeros((len(queries), 0), np.float32)
    for start, rows in chunks:
        scores = queries @ rows.T
        ids = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        all_scores = np.concatenate([best_scores, scores], 1)
        all_ids = np.concatenate([best_ids, ids], 1)
        top = np.argsort(-all_scores, axis=1)[:, :k]
        best_scores, best_ids = np.take_along_axis(all_scores, top, 1), np.take_along_axis(all_ids, top, 1)
    return best_ids

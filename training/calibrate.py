"""Fit an encoder's attribution-share calibration (method.md §5) and store it in its encoder.json.

    python -m training calibrate ARTEFACT --labelled SET     # (synthetic, exemplar) pairs: either eval format
    python -m training calibrate ARTEFACT --works-dir DIR    # pseudo-pairs, one subfolder per work
    python -m training calibrate ARTEFACT                    # pseudo-pairs from the registered works (DB)

Pseudo-pairs [ours]: a strongly augmented source image is the query, every image of its work is a
true match, every other work's image a candidate. inv_tau starts at 1 and b at 0, as in AbC; ReLU is
replaced by Softplus(beta=100) while fitting so the cut-off tail still passes gradient."""
import argparse
import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torchvision import transforms as T

from core.calibration import Calibration
from core.encoder import Encoder, load_artefact
from training.augment import view_ops
from training.config import TrainConfig
from training.data import list_images
from training.eval_data import read_eval_set
from training.features import FeatureCache, extract_set_features


@dataclass
class ScoredQueries:
    """Per query: candidate scores sorted descending [n, C] and a truth mask [n, C]."""
    scores: torch.Tensor
    truth: torch.Tensor


def top_candidates(score_rows: list[np.ndarray], truth_rows: list[np.ndarray], keep: int) -> ScoredQueries:
    """Keep each query's `keep` best candidates (what the service ranks); drop queries with no truth there."""
    scores, truth = [], []
    for s, t in zip(score_rows, truth_rows):
        order = np.argsort(-s, kind="stable")[:keep]
        if t[order].any():
            scores.append(s[order])
            truth.append(t[order])
    if not scores:
        raise ValueError("no query has a true match among its top candidates")
    width = min(len(s) for s in scores)
    return ScoredQueries(torch.tensor(np.stack([s[:width] for s in scores])).float(),
                         torch.tensor(np.stack([t[:width] for t in truth])))


def fit_calibration(data: ScoredQueries, steps: int = 500, lr: float = 0.1) -> Calibration:
    """Minimise the mean -log p of true matches over (inv_tau, b).

    inv_tau is fitted through its log (still starting at 1): a negative inverse temperature would
    rank the worst candidates first, which degenerate data (one image per work) can otherwise reach."""
    log_inv_tau, bias = torch.tensor(0.0, requires_grad=True), torch.tensor(0.0, requires_grad=True)
    optimizer = torch.optim.Adam([log_inv_tau, bias], lr=lr)
    gaps = data.scores - data.scores[:, :1]
    for _ in range(steps):
        mass = F.softplus(torch.exp(gaps * log_inv_tau.exp()) + 0.001 * bias, beta=100)
        log_p = torch.log(mass / mass.sum(dim=1, keepdim=True) + 1e-12)
        loss = -(log_p * data.truth).sum() / data.truth.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return Calibration(inv_tau=log_inv_tau.exp().item(), bias=bias.item(), fitted=True)


def labelled_scores(encoder: Encoder, set_path: str | Path, keep: int) -> ScoredQueries:
    """Service protocol pool: every concept's exemplars + distractors; truth = own exemplars."""
    features = extract_set_features(encoder, read_eval_set(set_path), FeatureCache())
    concepts = list(features.exemplars)
    pool = np.concatenate([features.exemplars[c] for c in concepts] + [features.distractors])
    owner = np.concatenate([[c] * len(features.exemplars[c]) for c in concepts] + [[""] * len(features.distractors)])
    rows, truth = [], []
    for concept, by_type in features.queries.items():
        for queries in by_type.values():
            rows += list(queries @ pool.T)
            truth += [owner == concept] * len(queries)
    return top_candidates(rows, truth, keep)


def serving_candidates() -> int:
    """How many image hits the worker turns into shares for a default query (top_k x hits per work)."""
    from common.settings import get_settings
    settings = get_settings()
    return settings.default_top_k * settings.image_hits_per_work


def pseudo_pair_scores(encoder: Encoder, works: dict[str, list[Path]], keep: int, seed: int = 0) -> ScoredQueries:
    random.seed(seed)
    torch.manual_seed(seed)
    paths = [p for ps in works.values() for p in ps]
    owner = np.array([w for w, ps in works.items() for _ in ps])
    pool = FeatureCache().embed_paths(encoder, paths, desc="embed works")
    augment = T.Compose(view_ops(TrainConfig(), encoder.preprocess.size))
    queries = encoder.embed([augment(_open_rgb(p)) for p in paths])
    scores = queries @ pool.T
    # A real synthetic image is a new depiction, not a copy of a registered photo: the query's own source
    # is left out of its candidates (when its work has other images), or calibration turns overconfident.
    # (Finite, below any cosine, and not a truth: an infinite score would turn the fit's gradients NaN.)
    counts = {w: len(ps) for w, ps in works.items()}
    truth = [owner == w for w in owner]
    for i, work in enumerate(owner):
        if counts[work] > 1:
            scores[i, i], truth[i][i] = -10.0, False
    return top_candidates(list(scores), truth, keep)


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def works_from_dir(root: str | Path) -> dict[str, list[Path]]:
    return {d.name: list_images(d) for d in sorted(Path(root).iterdir()) if d.is_dir() and list_images(d)}


def write_calibration(artefact: Path, calibration: Calibration, source: str) -> None:
    """Rewrite encoder.json atomically; the weights (and so the encoder id) are unchanged."""
    meta = json.loads((artefact / "encoder.json").read_text())
    meta["calibration"] = calibration.to_dict()
    meta["calibration_fitted_on"] = source
    fd, tmp = tempfile.mkstemp(dir=artefact, prefix=".encoder-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(meta, indent=2))
    os.replace(tmp, artefact / "encoder.json")


def calibrate_artefact(artefact: str | Path, labelled: str | None = None, works_dir: str | None = None,
                       keep: int | None = None) -> Calibration:
    artefact = Path(artefact)
    keep = keep or serving_candidates()
    encoder = load_artefact(artefact)
    if labelled:
        data, source = labelled_scores(encoder, labelled, keep), f"labelled:{labelled}"
    else:
        from training.data import registered_works
        works = works_from_dir(works_dir) if works_dir else registered_works()
        data, source = pseudo_pair_scores(encoder, works, keep), f"pseudo-pairs:{works_dir or 'registered works'}"
    calibration = fit_calibration(data)
    write_calibration(artefact, calibration, source)
    return calibration


def main(argv: list[str] | None = None) -> Calibration:
    parser = argparse.ArgumentParser(prog="python -m training calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artefact")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--labelled", help="an evaluation set (folder format or AbC .json) with pairs")
    source.add_argument("--works-dir", help="pseudo-pairs from a folder with one subfolder per work")
    parser.add_argument("--keep", type=int, default=None,
                        help="candidates per query (default: what the worker ranks for a default query)")
    args = parser.parse_args(argv)
    calibration = calibrate_artefact(args.artefact, args.labelled, args.works_dir, args.keep)
    print(f"calibration: {calibration}")
    return calibration

"""Fit attribution-share calibration (method.md §5): for the serving pair, or into an encoder artefact.

    python -m training calibrate                             # the serving pair: pseudo-pairs from the
                                                             # registered works' stored vectors -> a new pair
    python -m training calibrate ARTEFACT --labelled SET     # (synthetic, exemplar) pairs: either eval format
    python -m training calibrate ARTEFACT --works-dir DIR    # pseudo-pairs, one subfolder per work
    python -m training calibrate ARTEFACT                    # pseudo-pairs from the registered works (DB)

Every source becomes a CandidateTable (per query: its best image candidates, their works, the true
work) and goes through one fit: inv_tau starts at 1 and b at 0, as in AbC; ReLU is replaced by
Softplus(beta=100) while fitting so the cut-off tail still passes gradient. A quarter of the queries is
held out to measure the fitted ECE that results report. For the serving pair the result is published as
a NEW pair (same encoder and index): results name their pair, so earlier results never change."""
import argparse
import json
import os
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from core.calibration import Calibration
from core.encoder import Encoder, load_artefact, load_encoder
from training.candidates import CandidateTable, table_ece
from training.data import list_images
from training.features import FeatureCache, extract_set_features, open_rgb
from training.pseudo_pairs import (
    POOL, QUERIES, Registry, augmented_queries, drift_to_traffic, pseudo_pair_candidates,
)

HELD_OUT = 0.25


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


def scored_queries(table: CandidateTable) -> ScoredQueries:
    return top_candidates(list(table.scores), list(table.truth_mask()), table.scores.shape[1])


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


def fit_and_check(table: CandidateTable, fitted_on: str, top_k: int, seed: int = 0) -> Calibration:
    """Fit on 3/4 of the queries, measure the top share's ECE on the other 1/4 (as the service ranks)."""
    order = np.random.default_rng(seed).permutation(len(table))
    cut = int(round(len(table) * (1 - HELD_OUT))) if len(table) >= 8 else len(table)
    fit_rows, check_rows = order[:cut], order[cut:] if cut < len(table) else order
    calibration = fit_calibration(scored_queries(table.subset(fit_rows)))
    return replace(calibration, fitted_on=fitted_on, n=int(cut), fitted_at=datetime.now(timezone.utc).isoformat(),
                   ece=round(table_ece(table.subset(check_rows), calibration, top_k), 4))


def serving_top_k() -> tuple[int, int]:
    """(top_k, image hits) of a default query: what the worker ranks."""
    from common.settings import get_settings
    settings = get_settings()
    return settings.default_top_k, settings.default_top_k * settings.image_hits_per_work


def works_registry(encoder: Encoder, works: dict[str, list[Path]]) -> tuple[Registry, list]:
    """Small registries given as files (tests, retrain's fresh artefact): embed every image."""
    paths = [p for ps in works.values() for p in ps]
    pool = FeatureCache().embed_paths(encoder, paths, desc="embed works")
    return Registry(pool, np.array([w for w, ps in works.items() for _ in ps], dtype=object)), paths


def pseudo_pair_table(encoder: Encoder, works: dict[str, list[Path]], hits: int, seed: int = 0) -> CandidateTable:
    registry, paths = works_registry(encoder, works)
    queries = augmented_queries(encoder, [open_rgb(p) for p in paths], seed)
    return pseudo_pair_candidates(queries, list(range(len(paths))), registry, hits)


def labelled_table(encoder: Encoder, set_path: str | Path, hits: int) -> CandidateTable:
    """Service protocol: every concept's exemplars + distractors are works; truth = the query's concept."""
    from training.eval_data import read_eval_set
    from training.share_eval import service_candidates
    return service_candidates(extract_set_features(encoder, read_eval_set(set_path), FeatureCache()), hits)[0]


def works_from_dir(root: str | Path) -> dict[str, list[Path]]:
    return {d.name: list_images(d) for d in sorted(Path(root).iterdir()) if d.is_dir() and list_images(d)}


def write_calibration(artefact: Path, calibration: Calibration) -> None:
    """Rewrite encoder.json atomically; the weights (and so the encoder id) are unchanged."""
    meta = json.loads((artefact / "encoder.json").read_text())
    meta["calibration"] = calibration.to_dict()
    fd, tmp = tempfile.mkstemp(dir=artefact, prefix=".encoder-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(meta, indent=2))
    os.replace(tmp, artefact / "encoder.json")


def calibrate_artefact(artefact: str | Path, labelled: str | None = None, works_dir: str | None = None,
                       keep: int | None = None) -> Calibration:
    artefact = Path(artefact)
    top_k, hits = serving_top_k()
    hits = keep or hits
    encoder = load_artefact(artefact)
    if labelled:
        table, source = labelled_table(encoder, labelled, hits), f"labelled: {labelled}"
    else:
        from training.data import registered_works
        works = works_from_dir(works_dir) if works_dir else registered_works()
        table = pseudo_pair_table(encoder, works, hits)
        source = f"pseudo-pairs: {len(table)} augmented images of {len(works)} works ({works_dir or 'registered'})"
    calibration = fit_and_check(table, source, top_k)
    write_calibration(artefact, calibration)
    return calibration


def pseudo_pair_source(queries: int, traffic: int, registry: Registry) -> str:
    drift = f"drifted to the top-1 scores of {traffic} recent queries" if traffic else "no traffic yet, not drifted"
    return (f"pseudo-pairs: {queries} augmented source images ({drift}), {len(registry.works)} stored vectors "
            f"of {len(set(registry.works.tolist()))} registered works")


def verdict_candidates(encoder_id: str) -> CandidateTable | None:
    """Hook for reviewers' verdicts (design.md §8), the preferred fitting data once they exist: each
    confirmed verdict's stored `query_vector` searched against the pair's vectors gives a row (truth = the
    confirmed work; a rejection is a known wrong candidate). Not built on this branch: returns None, and
    calibrate_serving falls back to pseudo-pairs. Held-out verdicts then replace fit_and_check's split."""
    return None


def calibrate_serving(queries: int = QUERIES, pool: int = POOL, seed: int = 0,
                      publish: bool = True) -> tuple[Calibration, object]:
    """Fit the active pair (or the configured encoder) and publish it with this calibration as a new pair."""
    from common.db import crud
    from common.db.session import new_session
    from common.settings import get_settings
    from training.publish import publish_calibration
    from training.stored_registry import recent_top_scores, stored_registry_sample
    with new_session() as session:
        active = crud.get_active_pair(session)
        spec, based_on = (active.encoder_uri, active.id) if active else (get_settings().encoder, None)
    from indexing.artifacts import resolve  # a pair published to shared storage names a `storage:` spec
    encoder = load_encoder(resolve(spec, get_settings()))
    top_k, hits = serving_top_k()
    table = verdict_candidates(encoder.encoder_id)
    if table is not None:
        source = f"verdicts: {len(table)} reviewed queries"
    else:
        registry, rows, images = stored_registry_sample(encoder.encoder_id, encoder.dim, queries, pool, seed)
        traffic = recent_top_scores(encoder.encoder_id)
        drifted = drift_to_traffic(augmented_queries(encoder, images, seed), registry, traffic, seed)
        table = pseudo_pair_candidates(drifted, rows, registry, hits)
        source = pseudo_pair_source(len(rows), len(traffic), registry)
    calibration = fit_and_check(table, source, top_k, seed)
    pair = publish_calibration(calibration, encoder, based_on) if publish else None
    return calibration, pair


def main(argv: list[str] | None = None) -> Calibration:
    parser = argparse.ArgumentParser(prog="python -m training calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artefact", nargs="?", help="an encoder artefact dir (default: the serving pair)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--labelled", help="an evaluation set (folder format or AbC .json) with pairs")
    source.add_argument("--works-dir", help="pseudo-pairs from a folder with one subfolder per work")
    parser.add_argument("--keep", type=int, default=None,
                        help="candidates per query (default: what the worker ranks for a default query)")
    parser.add_argument("--queries", type=int, default=QUERIES, help="serving pair: source images sampled as queries")
    parser.add_argument("--pool", type=int, default=POOL, help="serving pair: stored vectors read at most (+ the sampled works')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true", help="serving pair: fit and print, publish nothing")
    args = parser.parse_args(argv)
    if args.artefact is None:
        if args.labelled or args.works_dir:
            parser.error("--labelled/--works-dir calibrate an ARTEFACT; the serving pair uses its registered works")
        calibration, pair = calibrate_serving(args.queries, args.pool, args.seed, not args.dry_run)
        print(f"calibration: {calibration}" + (f"\npublished pair {pair.id}" if pair else " (not published)"))
        return calibration
    calibration = calibrate_artefact(args.artefact, args.labelled, args.works_dir, args.keep)
    print(f"calibration: {calibration}")
    return calibration

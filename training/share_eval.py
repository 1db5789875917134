"""Shares exactly as the service computes them, on an evaluation set's features (service protocol).

Every concept's exemplars and every distractor are registered works (a distractor is a work of one
image). A query fetches its `top_k x image_hits_per_work` nearest images, and core.ranking.rank_works
turns them into ranked works with shares, as worker/jobs.py does. One outcome per query: the top
work's share, whether that work is right, the true work's share (0 when not returned), `unattributed`,
and the multi-class Brier term. Calibration changes shares only, never this ranking."""
from dataclasses import dataclass

import numpy as np

from core.calibration import Calibration
from core.ranking import rank_works
from training.candidates import CandidateTable, candidates_from_scores
from training.features import SetFeatures

DISTRACTOR = "distractor:"


@dataclass
class ShareOutcomes:
    """One row per query, in a fixed order (concept, query type, file)."""
    query_type: np.ndarray  # [n] str
    top_share: np.ndarray   # [n] share of the rank-1 work
    correct: np.ndarray     # [n] bool: the rank-1 work is the query's own
    true_share: np.ndarray  # [n] the own work's share, 0 when it is not returned
    unattributed: np.ndarray
    brier: np.ndarray       # [n] sum of squared errors over returned works + the unattributed bucket
    ranked: list            # [n] ranked work labels (to check that calibration never reorders)


def service_registry(features: SetFeatures) -> tuple[np.ndarray, np.ndarray]:
    """The service's index as the evaluator sees it: vectors [N, d] and each row's work label [N]."""
    concepts = list(features.exemplars)
    vectors = np.concatenate([features.exemplars[c] for c in concepts] + [features.distractors])
    labels = [c for c in concepts for _ in range(len(features.exemplars[c]))]
    labels += [f"{DISTRACTOR}{i}" for i in range(len(features.distractors))]
    return vectors.astype(np.float32), np.array(labels, dtype=object)


def labelled_queries(features: SetFeatures) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All queries stacked [n, d], with their concept [n] and query type [n]."""
    rows, concepts, types = [], [], []
    for concept, by_type in features.queries.items():
        for qtype, queries in by_type.items():
            rows.append(queries)
            concepts += [concept] * len(queries)
            types += [qtype] * len(queries)
    return np.concatenate(rows), np.array(concepts, dtype=object), np.array(types)


def service_candidates(features: SetFeatures, hits: int) -> tuple[CandidateTable, np.ndarray]:
    """Each labelled query's `hits` nearest registered images (and the query types)."""
    vectors, works = service_registry(features)
    queries, concepts, types = labelled_queries(features)
    return candidates_from_scores(queries @ vectors.T, works, concepts, min(hits, 1000)), types


def service_outcomes(table: CandidateTable, types: np.ndarray, calibration: Calibration,
                     top_k: int = 10) -> ShareOutcomes:
    rows = [_outcome(s, w, t, calibration, top_k) for s, w, t in zip(table.scores, table.works, table.truth)]
    columns = list(zip(*rows))
    return ShareOutcomes(types, *(np.array(c) for c in columns[:-1]), list(columns[-1]))


def _outcome(scores: np.ndarray, works: np.ndarray, concept: str, calibration: Calibration, top_k: int) -> tuple:
    work_of = dict(enumerate(works.tolist()))
    ranked, unattributed = rank_works(np.arange(len(scores)), scores, work_of, top_k, calibration)
    shares = {w.work_id: w.share for w in ranked}
    top = ranked[0] if ranked else None
    brier = sum((p - (w == concept)) ** 2 for w, p in shares.items())
    brier += (unattributed - (concept not in shares)) ** 2  # the bucket is "right" when the work is missing
    return (top.share if top else 0.0, bool(top and top.work_id == concept), shares.get(concept, 0.0),
            unattributed, brier, [w.work_id for w in ranked])

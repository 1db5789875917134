"""The one input every calibration fit takes: per query, its best image candidates (what the service
ranks), the work of each candidate, and the query's true work. Any source can produce it: labelled
sets, pseudo-pairs from the registered works, and later reviewers' verdicts (design.md §8)."""
from dataclasses import dataclass

import numpy as np

from core.calibration import Calibration
from core.ranking import rank_works
from training.calibration_metrics import expected_calibration_error


@dataclass
class CandidateTable:
    scores: np.ndarray  # [n, C] image scores, best first
    works: np.ndarray   # [n, C] work label of each candidate (str; "" = not a live work)
    truth: np.ndarray   # [n] the query's true work label

    def __len__(self) -> int:
        return len(self.truth)

    def subset(self, rows: np.ndarray) -> "CandidateTable":
        return CandidateTable(self.scores[rows], self.works[rows], self.truth[rows])

    def truth_mask(self) -> np.ndarray:
        return self.works == self.truth[:, None]


def candidates_from_scores(scores: np.ndarray, pool_works: np.ndarray, truth: np.ndarray,
                           hits: int) -> CandidateTable:
    """scores [n, N] against a pool whose rows belong to `pool_works` [N] -> each query's `hits` best."""
    hits = min(hits, scores.shape[1])
    top = np.argpartition(-scores, hits - 1, axis=1)[:, :hits]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(top, order, axis=1)
    return CandidateTable(np.take_along_axis(scores, ids, axis=1), pool_works[ids], np.asarray(truth))


def top_share_outcomes(table: CandidateTable, calibration: Calibration, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 work's share and whether it is right, exactly as core.ranking ranks the candidates."""
    shares, correct = [], []
    for scores, works, truth in zip(table.scores, table.works, table.truth):
        work_of = {j: w for j, w in enumerate(works.tolist()) if w}
        ranked, _ = rank_works(np.arange(len(scores)), scores, work_of, top_k, calibration)
        shares.append(ranked[0].share if ranked else 0.0)
        correct.append(bool(ranked) and ranked[0].work_id == truth)
    return np.array(shares), np.array(correct, dtype=np.float64)


def table_ece(table: CandidateTable, calibration: Calibration, top_k: int) -> float:
    """ECE of the top share on these queries, in [0, 1]."""
    share, correct = top_share_outcomes(table, calibration, top_k)
    return expected_calibration_error(share, correct)

"""Image hits grouped into works, with calibrated shares (method.md §5)."""
import math

import numpy as np
import pytest

from core.calibration import Calibration, image_shares
from core.ranking import rank_works


def test_shares_follow_the_formula():
    scores = np.array([0.9, 0.8, 0.5])
    shares = image_shares(scores, Calibration(inv_tau=10.0, bias=0.0))
    e = np.exp((scores - 0.9) * 10)
    np.testing.assert_allclose(shares, e / e.sum())


def test_negative_bias_cuts_the_tail_to_zero():
    shares = image_shares(np.array([0.9, 0.85, 0.2]), Calibration(inv_tau=10.0, bias=-100.0))
    assert shares[2] == 0.0 and shares[0] > shares[1] > 0
    assert shares.sum() == pytest.approx(1.0)


def test_works_score_by_best_image_and_sum_their_shares():
    ids = np.array([11, 21, 12, 31])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    works = {11: "A", 12: "A", 21: "B"}  # image 31's work was deleted
    ranked, unattributed = rank_works(ids, scores, works, top_k=5, calibration=Calibration(inv_tau=1.0))
    e = np.exp(scores - 0.9)
    p = e / e.sum()
    assert [w.work_id for w in ranked] == ["A", "B"]
    assert ranked[0].score == 0.9 and ranked[0].best_image_id == 11
    assert ranked[0].share == pytest.approx(p[0] + p[2])
    assert unattributed == pytest.approx(p[3])


def test_top_k_truncates_and_remainder_is_unattributed():
    ranked, unattributed = rank_works(np.array([1, 2]), np.array([0.9, 0.9]), {1: "A", 2: "B"}, top_k=1,
                                      calibration=Calibration())
    assert len(ranked) == 1 and math.isclose(unattributed, 0.5)


def test_no_hits():
    ranked, unattributed = rank_works(np.array([], np.int64), np.array([]), {}, 5, Calibration())
    assert ranked == [] and unattributed == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_calibration_never_changes_the_ranking(seed):
    """Top-1 and the whole order depend on scores only; calibrations change shares (design.md §7)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(40)
    scores = np.sort(rng.uniform(0.2, 0.9, 40))[::-1]
    scores[5:8] = scores[5]  # ties between works must stay in the same order too
    works = {i: f"w{rng.integers(0, 12)}" for i in ids.tolist()}
    calibrations = [Calibration(), Calibration(inv_tau=1.0), Calibration(inv_tau=80.0, bias=-300.0),
                    Calibration(inv_tau=5.0, bias=50.0)]
    rankings = [rank_works(ids, scores, works, top_k=10, calibration=c)[0] for c in calibrations]
    orders = [[(w.work_id, w.score, w.best_image_id) for w in ranked] for ranked in rankings]
    assert all(order == orders[0] for order in orders) and len(orders[0]) == 10
    shares = [[w.share for w in ranked] for ranked in rankings]
    assert len({tuple(np.round(s, 6)) for s in shares}) == len(calibrations)  # the shares did change

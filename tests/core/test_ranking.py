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

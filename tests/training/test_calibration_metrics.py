"""Calibration metrics on hand-made outcomes, and shares computed as the service does."""
import numpy as np
import pytest

from core.calibration import Calibration
from training.calibration_metrics import (
    bootstrap_interval, calibration_by_type, expected_calibration_error, reliability_bins,
)
from training.features import SetFeatures
from training.share_eval import service_candidates, service_outcomes


def test_ece_uses_equal_mass_bins():
    # 10 queries at share 0.9 (all right) and 10 at 0.5 (none right): two bins, errors 0.1 and 0.5.
    share = np.array([0.9] * 10 + [0.5] * 10)
    correct = np.array([1.0] * 10 + [0.0] * 10)
    assert expected_calibration_error(share, correct, bins=2) == pytest.approx(0.3)
    bins = reliability_bins(share, correct, bins=2)
    assert [b["n"] for b in bins] == [10, 10] and bins[0]["accuracy"] == 0.0


def test_calibrated_shares_score_near_zero_and_the_interval_covers_the_estimate():
    rng = np.random.default_rng(0)
    share = rng.uniform(0.2, 1.0, 4000)
    correct = (rng.uniform(size=4000) < share).astype(float)
    ece = expected_calibration_error(share, correct)
    low, high = bootstrap_interval(share, correct, resamples=200)
    # ECE is biased upwards (|.| per bin), so near 0 the percentile interval can sit just above the estimate.
    assert ece < 0.03 and low < high < 0.05 and ece <= high
    overconfident = expected_calibration_error(np.minimum(share + 0.2, 1.0), correct)
    assert overconfident > 0.1


def features():
    """Two concepts (one exemplar each) and one distractor in 3-d; three queries."""
    e = np.eye(3, dtype=np.float32)
    q = np.array([[0.9, 0.1, 0.0], [0.2, 0.0, 0.9], [0.1, 0.9, 0.3]], np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return SetFeatures({"a": e[:1], "b": e[1:2]}, {"a": {"photo": q[:2]}, "b": {"sketch": q[2:]}}, e[2:])


def test_service_outcomes_follow_the_service_ranking():
    table, types = service_candidates(features(), hits=3)
    out = service_outcomes(table, types, Calibration(inv_tau=1.0), top_k=1)
    # query 2 of "a" is closest to the distractor: wrong, and its true work (not returned) gets nothing.
    assert out.correct.tolist() == [True, False, True]
    assert out.ranked[1] == ["distractor:0"] and out.true_share[1] == 0.0
    np.testing.assert_allclose(out.top_share + out.unattributed, 1.0)
    assert out.unattributed[0] < out.true_share[0] and out.unattributed[1] > out.true_share[1]
    metrics = calibration_by_type(out, resamples=20)
    assert list(metrics) == ["all", "photo", "sketch"] and metrics["photo"]["n"] == 2
    assert metrics["all"]["top1"] == pytest.approx(200 / 3)
    assert metrics["photo"]["unattributed_over_true"] == 50.0

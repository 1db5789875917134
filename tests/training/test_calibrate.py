"""Calibration fitting on hand-made score tables."""
import numpy as np

from training.calibrate import fit_calibration, top_candidates


def test_confident_truths_sharpen_the_temperature():
    scores = [np.array([0.9, 0.5, 0.4, 0.3]), np.array([0.2, 0.8, 0.1, 0.0])]
    truth = [np.array([1, 0, 0, 0], bool), np.array([0, 1, 0, 0], bool)]
    data = top_candidates(scores, truth, keep=3)
    assert data.scores.shape == (2, 3) and data.truth[:, 0].all()  # sorted, truth first
    calibration = fit_calibration(data, steps=200)
    assert calibration.fitted and calibration.inv_tau > 1.0


def test_inverse_temperature_stays_positive_when_truths_score_lowest():
    scores = [np.array([0.9, 0.8, 0.1])] * 3
    truth = [np.array([0, 0, 1], bool)] * 3
    assert fit_calibration(top_candidates(scores, truth, keep=3), steps=200).inv_tau > 0


def test_queries_without_a_truth_in_their_top_candidates_are_dropped():
    data = top_candidates([np.array([0.9, 0.1]), np.array([0.9, 0.1])],
                          [np.array([0, 1], bool), np.array([1, 0], bool)], keep=1)
    assert data.scores.shape == (1, 1)

import numpy as np
import pytest

from regbench.run.metrics import brier_score, expected_calibration_error, reliability_bins


def test_ece_is_zero_when_confidence_equals_accuracy():
    # 10 predictions at confidence 0.8, 8 of them right.
    probs = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)


def test_ece_weighs_bins_by_their_counts():
    # bin of conf 0.9 (4 samples, all right: gap 0.1) and conf 0.6 (6 samples, all wrong: 0.6)
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 6)
    labels = np.array([0] * 4 + [1] * 6)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4 * 0.1 + 0.6 * 0.6)


def test_reliability_bins_use_fifteen_right_closed_bins():
    probs = np.array([[1 / 15, 14 / 15], [0.5, 0.5], [1.0, 0.0]])
    bins = reliability_bins(probs, np.array([1, 0, 0]))
    assert len(bins.counts) == 15 and bins.counts.sum() == 3
    assert bins.counts[13] == 1 and bins.counts[7] == 1 and bins.counts[14] == 1


def test_brier_score():
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    labels = np.array([0, 0, 0])
    assert brier_score(probs, labels) == pytest.approx((0 + 0.5 + 2) / 3)

"""Reliability and scoring of predicted class probabilities (numpy only; the cross-entropy
and accuracy come from Keras' own metrics). regbench says *reliability* for how well the
predicted probabilities match the frequencies (ECE keeps its standard name, expected
calibration error) and *calibration* only for the probe that places a strength grid
(``regbench.design.calibrate``).

For probabilities P (n x k), labels y, confidence c_i = max_k P_ik, prediction argmax_k P_ik:

* Brier score    = mean_i sum_k (P_ik - [k == y_i])^2                  (0 best, 2 worst)
* ECE (B bins)   = sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|, with B equal-width
  bins over (0, 1], bin b = ((b)/B, (b+1)/B]; 15 bins as in Guo et al. (2017).
"""

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin counts, accuracy and mean confidence (NaN for empty bins) over (0, 1]."""

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {name: getattr(self, name).tolist()
                for name in ("edges", "counts", "accuracy", "confidence")}

    @classmethod
    def from_dict(cls, record: dict[str, list[float]]) -> "ReliabilityBins":
        return cls(*(np.array(record[name], dtype=float)
                     for name in ("edges", "counts", "accuracy", "confidence")))

    @classmethod
    def pooled(cls, parts: list["ReliabilityBins"]) -> "ReliabilityBins":
        """The bins of all parts' predictions together: counts add, accuracy and confidence are
        count-weighted means per bin."""
        counts = np.sum([p.counts for p in parts], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy, confidence = (
                np.nansum([getattr(p, name) * p.counts for p in parts], axis=0) / counts
                for name in ("accuracy", "confidence"))
        accuracy[counts == 0] = confidence[counts == 0] = np.nan
        return cls(parts[0].edges, counts, accuracy, confidence)

    @property
    def ece(self) -> float:
        filled = self.counts > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.counts[filled] * gaps) / np.sum(self.counts))


def reliability_bins(probs: np.ndarray, labels: np.ndarray,
                     n_bins: int = ECE_BINS) -> ReliabilityBins:
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / counts
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / counts
    return ReliabilityBins(np.linspace(0.0, 1.0, n_bins + 1), counts, accuracy, mean_conf)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray,
                               n_bins: int = ECE_BINS) -> float:
    return reliability_bins(probs, labels, n_bins).ece


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))

"""How sure are we? The difference between two arms of runs, with its uncertainty.

For one metric, arm A (values a_s by seed s) against reference arm R:

* estimate  = mean(a) - mean(r)
* 95% CI    = percentile bootstrap over seeds: when both arms have the same seeds, resample the
  seeds and average the paired differences a_s - r_s (pairing removes the seed-to-seed
  variation both arms share); otherwise resample each arm on its own.
* p         = Welch's t-test (unequal variances) of a against r.
* verdict   = "better" or "worse" only when the CI excludes 0 *and* p < 1 - confidence; with fewer
  than two runs in either arm the difference cannot be judged; otherwise
  "no detectable difference at 95%".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CANNOT_JUDGE = "cannot be judged (needs at least 2 runs per arm)"
NO_DIFFERENCE = "no detectable difference at {level:g}%"


@dataclass(frozen=True)
class Difference:
    """arm minus reference for one metric; ``verdict`` is from the arm's point of view."""

    metric: str
    estimate: float
    low: float
    high: float
    p_value: float
    paired: bool
    verdict: str


def _paired(a: dict[int, float], r: dict[int, float]) -> bool:
    return len(a) > 1 and sorted(a) == sorted(r)


def bootstrap_interval(a: dict[int, float], r: dict[int, float], confidence: float = 0.95,
                       resamples: int = 10_000, seed: int = 0) -> tuple[float, float, bool]:
    """Percentile bootstrap CI of mean(a) - mean(r); returns (low, high, paired)."""
    rng = np.random.default_rng(seed)
    tail = 100 * (1 - confidence) / 2
    if _paired(a, r):
        diffs = np.array([a[s] - r[s] for s in sorted(a)])
        picks = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
        means = diffs[picks].mean(axis=1)
        paired = True
    else:
        av, rv = np.array(list(a.values())), np.array(list(r.values()))
        means = (av[rng.integers(0, len(av), size=(resamples, len(av)))].mean(axis=1)
                 - rv[rng.integers(0, len(rv), size=(resamples, len(rv)))].mean(axis=1))
        paired = False
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high), paired


def welch_p(a: list[float], r: list[float]) -> float:
    """Two-sided p-value of Welch's t-test; NaN when both samples are constant."""
    return float(stats.ttest_ind(a, r, equal_var=False).pvalue)


def compare(metric: str, arm: dict[int, float], reference: dict[int, float],
            higher_is_better: bool, confidence: float = 0.95) -> Difference:
    """The Difference of ``arm`` against ``reference`` (both: seed -> value) for ``metric``."""
    estimate = float(np.mean(list(arm.values())) - np.mean(list(reference.values())))
    if min(len(arm), len(reference)) < 2:
        return Difference(metric, estimate, np.nan, np.nan, np.nan, False, CANNOT_JUDGE)
    low, high, paired = bootstrap_interval(arm, reference, confidence)
    p_value = welch_p(list(arm.values()), list(reference.values()))
    verdict = NO_DIFFERENCE.format(level=100 * confidence)
    if p_value < 1 - confidence and (low > 0 or high < 0):
        verdict = "better" if (estimate > 0) == higher_is_better else "worse"
    return Difference(metric, estimate, low, high, p_value, paired, verdict)

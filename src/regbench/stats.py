"""How sure are we? One metric of an arm against the reference arm, over seeds.

Values a_s (arm) and r_s (reference) by seed s; confidence 1 - alpha (95%).

Paired (both arms have exactly the same n >= 2 seeds): d_s = a_s - r_s,

* estimate  = mean(d)
* interval  = mean(d) -/+ t_{1-alpha/2, n-1} * sd(d) / sqrt(n)        (``scipy.stats.ttest_rel``)
* p         = paired t-test of mean(d) = 0, and beside it the exact sign-flip permutation
  p-value: the share of all 2^n sign patterns of d whose |mean| >= |mean(d)| (two-sided as
  scipy defines it; a seeded Monte Carlo of 100,000 patterns beyond n = 16).

Unpaired (any other seeds): Welch's t-test, estimate = mean(a) - mean(r), interval
mean(a) - mean(r) -/+ t_{1-alpha/2, nu} * sqrt(s_a^2/n_a + s_r^2/n_r) with the
Welch-Satterthwaite nu (``scipy.stats.ttest_ind(equal_var=False)``).

With n >= 10 (both arms) a BCa bootstrap interval of the same estimate is added
(``scipy.stats.bootstrap``); below 10 seeds a bootstrap interval covers too little.

Multiplicity: every (arm, metric) test of one report is one family; ``holm`` adjusts their p
(Holm's step-down: sort the m p-values ascending, p_(i) -> max_{j <= i} min(1, (m - j + 1) p_(j))),
and the TOST p-values form a second family, adjusted the same way.

Equivalence within +/- margin (TOST): two one-sided t-tests (paired or Welch as above),
H0: delta <= -margin and H0: delta >= +margin; p_TOST = the larger of the two p.

Verdict, from the arm's point of view, on the adjusted p-values:

* ``cannot be judged``: fewer than 2 runs in either arm;
* ``better`` / ``worse``: p_adjusted < alpha, by the sign of the estimate and the metric's
  direction;
* ``equivalent``: else p_TOST,adjusted < alpha (the interval lies within +/- margin); also when
  the arms are identical (every paired seed has exactly the same value: no test is run);
* ``inconclusive``: otherwise, with the seeds per arm that would give a two-sided test at alpha
  80% power against a true difference of the margin's size, given the observed spread
  (noncentral t).

Probability of improvement, as rliable defines it for one task: P(arm better than reference) =
(1/(n_a n_r)) sum_{i,j} S(a_i, r_j), S = 1 if a_i is better, 1/2 if equal, 0 otherwise (the
Mann-Whitney U statistic over n_a n_r); its interval is a percentile bootstrap over runs,
resampling each arm separately, as rliable does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
POWER = 0.80
EXACT_SIGN_FLIPS_UP_TO = 16
MONTE_CARLO_SIGN_FLIPS = 100_000
BOOTSTRAP_MIN_N = 10
BOOTSTRAP_RESAMPLES = 9_999
IMPROVEMENT_RESAMPLES = 2_000  # Monte Carlo sd of its ends < 0.01 (5 seeds per arm)
BOOTSTRAP_CELLS = 10**7  # resamples x distinct values held at once: memory bound
MAX_SEEDS_NEEDED = 10_000

BETTER, WORSE, EQUIVALENT = "better", "worse", "equivalent"
INCONCLUSIVE, CANNOT_JUDGE = "inconclusive", "cannot be judged"
VERDICTS = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, CANNOT_JUDGE)


@dataclass(frozen=True)
class Difference:
    """Arm minus reference for one metric. NaN marks what was not computed (no test between
    identical arms, no bootstrap below 10 seeds, no p_sign_flip when unpaired)."""

    metric: str
    higher_is_better: bool
    margin: float
    n_arm: int
    n_reference: int
    paired: bool
    identical: bool
    estimate: float
    low: float
    high: float
    p_value: float
    p_sign_flip: float
    p_tost: float
    bootstrap_low: float
    bootstrap_high: float
    prob_improvement: float
    prob_improvement_low: float
    prob_improvement_high: float
    seeds_needed: int | None
    p_adjusted: float = np.nan
    p_tost_adjusted: float = np.nan

    @property
    def tested(self) -> bool:
        """Whether a test was run (two runs per arm or more, and the arms not identical)."""
        return not np.isnan(self.p_value)

    @property
    def verdict(self) -> str:
        alpha = 1 - CONFIDENCE
        if min(self.n_arm, self.n_reference) < 2:
            return CANNOT_JUDGE
        if self.identical:
            return EQUIVALENT
        if self.p_adjusted < alpha:
            return BETTER if (self.estimate > 0) == self.higher_is_better else WORSE
        if self.p_tost_adjusted < alpha:
            return EQUIVALENT
        return INCONCLUSIVE


def is_paired(arm: dict, reference: dict) -> bool:
    """Both arms have the same seeds, at least two."""
    return len(arm) >= 2 and sorted(arm) == sorted(reference)


def sign_flip_p(differences: np.ndarray, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of mean(differences) = 0: exact over all 2^n
    sign patterns up to n = 16, a seeded Monte Carlo beyond."""
    result = stats.permutation_test(
        (np.asarray(differences, dtype=float),), np.mean, permutation_type="samples",
        n_resamples=max(2 ** EXACT_SIGN_FLIPS_UP_TO, MONTE_CARLO_SIGN_FLIPS),
        alternative="two-sided", rng=np.random.default_rng(seed))
    return float(result.pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (NaN stays NaN, and is not
    counted in the family)."""
    p = np.asarray(p_values, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), np.nan)
    m = len(tested)
    running = 0.0
    for rank, index in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def _t_test(a: np.ndarray, r: np.ndarray, paired: bool, shift: float = 0.0,
            alternative: str = "two-sided"):
    """The paired or Welch t-test of mean difference = ``shift``."""
    if paired:
        return stats.ttest_rel(a - shift, r, alternative=alternative)
    return stats.ttest_ind(a - shift, r, equal_var=False, alternative=alternative)


def t_interval(a: np.ndarray, r: np.ndarray, paired: bool) -> tuple[float, float, float]:
    """(low, high, p) of the paired or Welch t-test of the difference, as defined above."""
    test = _t_test(a, r, paired)
    interval = test.confidence_interval(CONFIDENCE)
    return float(interval.low), float(interval.high), float(test.pvalue)


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """95% t-interval of one sample's mean, mean -/+ t_{1-alpha/2, n-1} sd / sqrt(n)
    (``scipy.stats.ttest_1samp``); NaN with fewer than two values."""
    if len(values) < 2:
        return np.nan, np.nan
    interval = stats.ttest_1samp(values, 0.0).confidence_interval(CONFIDENCE)
    return float(interval.low), float(interval.high)


def tost_p(a: np.ndarray, r: np.ndarray, paired: bool, margin: float) -> float:
    """p of the two one-sided tests that the true difference lies within (-margin, +margin)."""
    above_lower = _t_test(a, r, paired, shift=-margin, alternative="greater").pvalue
    below_upper = _t_test(a, r, paired, shift=margin, alternative="less").pvalue
    return float(max(above_lower, below_upper))


def seeds_needed(a: np.ndarray, r: np.ndarray, paired: bool, margin: float,
                 power: float = POWER) -> int | None:
    """Smallest seeds per arm at which a two-sided t-test at 1 - CONFIDENCE detects a true
    difference of ``margin`` with ``power``, taking the observed standard deviations as true
    (of the differences if paired, of each arm if not); None beyond MAX_SEEDS_NEEDED or when
    there is no spread to go by."""
    alpha = 1 - CONFIDENCE
    var_a, var_r = np.var(a, ddof=1), np.var(r, ddof=1)
    var_d = np.var(a - r, ddof=1) if paired else np.nan
    if (paired and var_d == 0) or (not paired and var_a + var_r == 0) or margin <= 0:
        return None
    n = np.arange(2, MAX_SEEDS_NEEDED + 1)  # every candidate at once, power grows with n
    if paired:
        se, df = np.sqrt(var_d / n), n - 1.0
    else:
        se = np.sqrt((var_a + var_r) / n)
        df = (var_a / n + var_r / n) ** 2 / (((var_a / n) ** 2 + (var_r / n) ** 2) / (n - 1))
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = margin / se
    achieved = stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift)
    enough = np.flatnonzero(achieved >= power)
    return int(n[enough[0]]) if len(enough) else None


def improvement_share(x: np.ndarray, y: np.ndarray, levels: int) -> np.ndarray:
    """U / (n_x n_y) along the last axis: the share of pairs (x_i, y_j) with x_i > y_j, ties
    counting 1/2, for integer ranks x, y in [0, levels) (a value's position among the sorted
    distinct values of both samples). Counted through each row's counts of y per rank, without
    an n_x x n_y matrix: U = sum_i (cy_<x_i + cy_x_i / 2)."""
    rows_x = x.reshape(-1, x.shape[-1]).astype(np.intp)
    rows_y = y.reshape(-1, y.shape[-1]).astype(np.intp)
    offsets = levels * np.arange(len(rows_y))[:, None]
    cy = np.bincount((rows_y + offsets).ravel(),
                     minlength=levels * len(rows_y)).reshape(len(rows_y), levels)
    below_or_tied = np.cumsum(cy, axis=1) - 0.5 * cy
    u = np.take_along_axis(below_or_tied, rows_x, axis=1).sum(axis=1)
    return (u / (x.shape[-1] * y.shape[-1])).reshape(x.shape[:-1])


def probability_of_improvement(a: np.ndarray, r: np.ndarray, higher_is_better: bool,
                               seed: int = 0) -> tuple[float, float, float]:
    """(P(arm better than reference), percentile bootstrap low, high), as defined above. The
    bootstrap resamples the values' ranks (same order, same ties), which improvement_share
    counts without sorting."""
    sign = 1.0 if higher_is_better else -1.0
    values = np.unique(np.concatenate([sign * a, sign * r]))
    ranks = np.searchsorted(values, sign * a), np.searchsorted(values, sign * r)

    def statistic(x, y, axis=-1):
        return improvement_share(np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1),
                                 len(values))

    estimate = float(statistic(*ranks))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few distinct resamples at small n: expected
        interval = stats.bootstrap(ranks, statistic, vectorized=True, paired=False,
                                   method="percentile", confidence_level=CONFIDENCE,
                                   n_resamples=IMPROVEMENT_RESAMPLES,
                                   batch=max(1, BOOTSTRAP_CELLS // len(values)),
                                   rng=np.random.default_rng(seed)).confidence_interval
    return estimate, float(interval.low), float(interval.high)


def _bootstrap_interval(a: np.ndarray, r: np.ndarray, paired: bool, seed: int = 0):
    if min(len(a), len(r)) < BOOTSTRAP_MIN_N:
        return np.nan, np.nan
    data = (a - r,) if paired else (a, r)

    def statistic(*samples, axis=-1):
        means = [np.mean(s, axis=axis) for s in samples]
        return means[0] if paired else means[0] - means[1]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (constant) samples give NaN, as they should
        interval = stats.bootstrap(data, statistic, method="BCa", confidence_level=CONFIDENCE,
                                   n_resamples=BOOTSTRAP_RESAMPLES,
                                   batch=max(1, BOOTSTRAP_CELLS // len(a)),
                                   rng=np.random.default_rng(seed)).confidence_interval
    return float(interval.low), float(interval.high)


def compare(metric: str, arm: dict, reference: dict, higher_is_better: bool,
            margin: float) -> Difference:
    """The Difference of ``arm`` against ``reference`` (both: seed -> value) for ``metric``;
    its adjusted p-values are NaN until ``adjust`` sets them for the whole report."""
    paired = is_paired(arm, reference)
    seeds = sorted(arm) if paired else None
    a = np.array([arm[s] for s in seeds] if paired else list(arm.values()), dtype=float)
    r = np.array([reference[s] for s in seeds] if paired else list(reference.values()),
                 dtype=float)
    nan = np.nan
    estimate = float(np.mean(a) - np.mean(r)) if len(a) and len(r) else nan
    if min(len(a), len(r)) < 2:
        return Difference(metric, higher_is_better, margin, len(a), len(r), False, False,
                          estimate, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, None)
    improvement = probability_of_improvement(a, r, higher_is_better)
    if paired and np.array_equal(a, r):
        return Difference(metric, higher_is_better, margin, len(a), len(r), True, True, 0.0,
                          0.0, 0.0, nan, nan, nan, nan, nan, *improvement, None)
    return Difference(
        metric, higher_is_better, margin, len(a), len(r), paired, False, estimate,
        *t_interval(a, r, paired), sign_flip_p(a - r) if paired else nan,
        tost_p(a, r, paired, margin),
        *_bootstrap_interval(a, r, paired), *improvement,
        seeds_needed(a, r, paired, margin))


def adjust(differences: list[Difference]) -> list[Difference]:
    """The same differences with Holm-adjusted p and p_TOST over the whole family."""
    p = holm([d.p_value for d in differences])
    p_tost = holm([d.p_tost for d in differences])
    return [replace(d, p_adjusted=pa, p_tost_adjusted=pt)
            for d, pa, pt in zip(differences, p, p_tost, strict=True)]

"""How sure are we? One metric of an arm against the reference arm, over seeds.

Values a_s (arm) and r_s (reference) by seed s; confidence 1 - alpha (95%).

Values that are NaN are dropped first and counted (``nan_dropped``); ``permutation_p`` and
``probability_of_improvement`` refuse NaN (ValueError).

Paired (the arms share n >= 2 seeds; seeds only one arm has are left out and counted,
``left_out``): d_s = a_s - r_s over the shared seeds,

* estimate  = mean(d)
* interval  = mean(d) -/+ t_{1-alpha/2, n-1} * sd(d) / sqrt(n)        (``scipy.stats.ttest_rel``)
* p         = paired t-test of mean(d) = 0, and beside it the sign-flip permutation p-value:
  the share of all 2^n sign patterns of d whose |mean| >= |mean(d)| (two-sided as scipy
  defines it; exact up to n = 16, a seeded Monte Carlo of 100,000 patterns beyond, up to
  n = 100: past that the mean of the differences is as close to normal as the t-test needs,
  and the permutation test, 1.2 s each at n = 334, is left out, NaN).

Unpaired (fewer than 2 shared seeds): Welch's t-test, estimate = mean(a) - mean(r), interval
mean(a) - mean(r) -/+ t_{1-alpha/2, nu} * sqrt(s_a^2/n_a + s_r^2/n_r) with the
Welch-Satterthwaite nu (``scipy.stats.ttest_ind(equal_var=False)``); its permutation p
permutes the arm labels (exact when C(n_a + n_r, n_a) <= 100,000, else Monte Carlo).

The p a verdict reads is the larger of the t-test's and the permutation test's (both valid,
so their maximum is): a verdict is never stronger than the permutation test allows (with n
paired seeds its smallest two-sided p is 2/2^n), and a zero spread, where t is infinite, never
gives p = 0.

With n >= 10 (both arms) a BCa bootstrap interval of the same estimate is added
(``scipy.stats.bootstrap``); below 10 seeds a bootstrap interval covers too little.

Multiplicity: every (arm, metric) test of one report is one family; ``holm`` adjusts their p
(Holm's step-down: sort the m p-values ascending, p_(i) -> max_{j <= i} min(1, (m - j + 1) p_(j))),
and the TOST p-values form a second family, adjusted the same way.

Equivalence within +/- margin (TOST): two one-sided tests (paired or Welch as above),
H0: delta <= -margin and H0: delta >= +margin, each the larger of the t-test's and the
permutation test's p on the shifted values; p_TOST = the larger of the two. TOST at alpha is the
check that the 1 - 2 alpha (90%) t-interval lies inside +/- margin: the report prints that
interval (``tost_low``, ``tost_high``) beside an *equivalent* verdict.

Identical arms: the caller says so (``identical``), when the paired values of every metric it
compares agree on every shared seed to within ROUND_OFF (relative), exactly or by float32
round-off (``agree_to_round_off``; ``comparison.identical`` is the one rule): the runs computed
the same thing, no test is run, and the verdict is *equivalent*. One metric agreeing alone is
not identity (an accuracy is a count, and two models can score the same on every seed and
differ): it is tested like any other, and a zero spread is held back by the sign flips.

Verdict, from the arm's point of view, on the adjusted p-values:

* ``cannot be judged``: fewer than 2 runs in either arm;
* ``better`` / ``worse``: p_adjusted < alpha, by the sign of the estimate and the metric's
  direction;
* ``equivalent``: else p_TOST,adjusted < alpha (the interval lies within +/- margin); also when
  the arms are identical (above);
* ``inconclusive``: otherwise, with the seeds per arm that would give a two-sided t-test 80%
  power against a true difference of the margin's size, given the observed spread (noncentral
  t), at the alpha the verdicts use: alpha / m for a family of m tests (Holm's strictest
  step), so that it is enough to settle the verdict.

Probability of improvement, as rliable defines it for one task: P(arm better than reference) =
(1/(n_a n_r)) sum_{i,j} S(a_i, r_j), S = 1 if a_i is better, 1/2 if equal, 0 otherwise (the
Mann-Whitney U statistic over n_a n_r); its interval is a percentile bootstrap over runs,
resampling each arm separately, as rliable does.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
POWER = 0.80
EXACT_SIGN_FLIPS_UP_TO = 16
MONTE_CARLO_SIGN_FLIPS = 100_000
PERMUTATION_UP_TO = 100  # values in a permutation test (pairs, or both arms' runs); NaN beyond
# resamples scipy's permutation_test evaluates at once: the same p-values as all at once (the
# same draws, in order), without an array of 100,000 x n (3.6 s for n = 334 here, 1.0 s batched)
PERMUTATION_BATCH = 4_000
BOOTSTRAP_MIN_N = 10
BOOTSTRAP_RESAMPLES = 9_999
IMPROVEMENT_RESAMPLES = 2_000  # Monte Carlo sd of its ends < 0.01 (5 seeds per arm)
BOOTSTRAP_CELLS = 10**7  # resamples x distinct values held at once: memory bound
MAX_SEEDS_NEEDED = 10_000
ROUND_OFF = 1e-5  # relative difference below which two float32 results are the same

BETTER, WORSE, EQUIVALENT = "better", "worse", "equivalent"
INCONCLUSIVE, CANNOT_JUDGE = "inconclusive", "cannot be judged"


@dataclass(frozen=True)
class Difference:
    """Arm minus reference for one metric. NaN marks what was not computed (no test between
    identical arms, no bootstrap below 10 seeds)."""

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
    p_value: float          # the t-test's
    p_permutation: float    # sign flips if paired, arm labels if not
    permutation_exact: bool  # False: a seeded Monte Carlo estimate
    p_tost: float
    tost_low: float         # the 1 - 2 alpha t-interval TOST reads
    tost_high: float
    bootstrap_low: float
    bootstrap_high: float
    prob_improvement: float
    prob_improvement_low: float
    prob_improvement_high: float
    seeds_needed: int | None
    left_out: int = 0       # seeds of one arm only, left out of the pairing
    nan_dropped: int = 0    # NaN values dropped before anything
    family: int = 1         # the tests seeds_needed's alpha was divided among
    p_adjusted: float = np.nan
    p_tost_adjusted: float = np.nan

    @property
    def p_verdict(self) -> float:
        """The p a verdict reads: the larger of the t-test's and the permutation test's (the
        t-test's alone past PERMUTATION_UP_TO; NaN when no test was run)."""
        return np.nan if np.isnan(self.p_value) else float(np.fmax(self.p_value,
                                                                    self.p_permutation))

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


def shared_seeds(arm: dict, reference: dict) -> list:
    """The seeds both arms have (the keys of seed -> value), in order: what pairing pairs."""
    return sorted(set(arm) & set(reference))


def agree_to_round_off(a: np.ndarray, r: np.ndarray) -> bool:
    """Paired values equal on every seed to within ROUND_OFF of their size: the one rule for
    arms that are identical (bit for bit or by float32 round-off)."""
    return bool(np.all(np.abs(a - r) <= ROUND_OFF * np.maximum(np.abs(a), np.abs(r))))


def _finite(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if np.isnan(values).any():
        raise ValueError(f"{name}: NaN among the values; drop them first (stats.compare "
                         "drops and counts them)")
    return values


def permutation_p(a: np.ndarray, r: np.ndarray, paired: bool, shift: float = 0.0,
                  alternative: str = "two-sided", seed: int = 0) -> tuple[float, bool]:
    """(p, exact) of the permutation test of mean difference = ``shift``: sign flips of
    d = a - shift - r if ``paired``, else permutations of the arm labels of a - shift and r.
    Exact over every pattern when there are at most 2^16 of them, else a seeded Monte Carlo
    of 100,000 (``exact`` False); (NaN, False) past PERMUTATION_UP_TO values (module
    docstring). Refuses NaN."""
    a, r = _finite(a, "a") - shift, _finite(r, "r")
    if (len(a) if paired else len(a) + len(r)) > PERMUTATION_UP_TO:
        return np.nan, False
    resamples = max(2 ** EXACT_SIGN_FLIPS_UP_TO, MONTE_CARLO_SIGN_FLIPS)
    rng = np.random.default_rng(seed)
    if paired:
        patterns = 2 ** len(a)
        result = stats.permutation_test((a - r,), np.mean, permutation_type="samples",
                                        n_resamples=resamples, alternative=alternative, rng=rng,
                                        batch=PERMUTATION_BATCH)
    else:
        patterns = math.comb(len(a) + len(r), len(a))

        def mean_difference(x, y, axis=-1):
            return np.mean(x, axis=axis) - np.mean(y, axis=axis)

        result = stats.permutation_test((a, r), mean_difference, vectorized=True,
                                        permutation_type="independent", n_resamples=resamples,
                                        alternative=alternative, rng=rng,
                                        batch=PERMUTATION_BATCH)
    return float(result.pvalue), patterns <= resamples


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


@contextlib.contextmanager
def _constant_samples_allowed():
    """scipy's t-tests warn "Precision loss occurred in moment calculation" on a sample whose
    values are all equal (seeds tied, or arms equal on every seed): the variance it computes
    is round-off, ~1e-33, instead of 0. Its answer is still the exact one for no spread (an
    interval of zero width, p near 0, or NaN for no difference), which the callers handle, so
    that warning, and only it, is not passed on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation",
                                RuntimeWarning)
        yield


def _t_test(a: np.ndarray, r: np.ndarray, paired: bool, shift: float = 0.0,
            alternative: str = "two-sided"):
    """The paired or Welch t-test of mean difference = ``shift``."""
    with _constant_samples_allowed():
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
    with _constant_samples_allowed():
        interval = stats.ttest_1samp(values, 0.0).confidence_interval(CONFIDENCE)
    return float(interval.low), float(interval.high)


def tost_p(a: np.ndarray, r: np.ndarray, paired: bool, margin: float) -> float:
    """p of the two one-sided tests that the true difference lies within (-margin, +margin),
    each the larger of the t-test's and the permutation test's p (as ``p_verdict``)."""
    sides = ((-margin, "greater"), (margin, "less"))
    return float(max(np.fmax(_t_test(a, r, paired, shift=shift, alternative=side).pvalue,
                             permutation_p(a, r, paired, shift=shift, alternative=side)[0])
                     for shift, side in sides))


def tost_interval(a: np.ndarray, r: np.ndarray, paired: bool) -> tuple[float, float]:
    """The 1 - 2 alpha (90%) t-interval of the difference: TOST at alpha finds equivalence
    exactly when it lies inside +/- margin."""
    interval = _t_test(a, r, paired).confidence_interval(1 - 2 * (1 - CONFIDENCE))
    return float(interval.low), float(interval.high)


def seeds_needed(a: np.ndarray, r: np.ndarray, paired: bool, margin: float,
                 power: float = POWER, family: int = 1) -> int | None:
    """Smallest seeds per arm at which a two-sided t-test at (1 - CONFIDENCE) / ``family``
    detects a true difference of ``margin`` with ``power``, taking the observed standard
    deviations as true (of the differences if paired, of each arm if not); None beyond
    MAX_SEEDS_NEEDED or when there is no spread to go by. Paired differences without spread
    (every seed's the same) would detect anything at once but for the exact sign-flip test,
    whose two-sided p is at least 2 / 2^n: then the smallest n with 2 / 2^n <= alpha."""
    alpha = (1 - CONFIDENCE) / family
    var_a, var_r = np.var(a, ddof=1), np.var(r, ddof=1)
    var_d = np.var(a - r, ddof=1) if paired else np.nan
    if paired and var_d == 0 and margin > 0:
        return int(math.ceil(math.log2(2 / alpha)))
    if (not paired and var_a + var_r == 0) or margin <= 0:
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
    counts without sorting. Refuses NaN."""
    a, r = _finite(a, "a"), _finite(r, "r")
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
            margin: float, family: int = 1, identical: bool = False) -> Difference:
    """The Difference of ``arm`` against ``reference`` (both: seed -> value) for ``metric``,
    as the module's docstring defines it; ``family`` is the number of tests of the report
    (seeds needed are counted at alpha / family); ``identical``: the arms' runs agree to
    round-off on every metric (then this one must too). Its adjusted p-values are NaN until
    ``adjust`` sets them for the whole report."""
    nan_dropped = sum(v != v for v in (*arm.values(), *reference.values()))
    arm = {s: v for s, v in arm.items() if v == v}
    reference = {s: v for s, v in reference.items() if v == v}
    shared = shared_seeds(arm, reference)
    paired = len(shared) >= 2
    left_out = len(arm) + len(reference) - 2 * len(shared) if paired else 0
    a = np.array([arm[s] for s in shared] if paired else list(arm.values()), dtype=float)
    r = np.array([reference[s] for s in shared] if paired else list(reference.values()),
                 dtype=float)
    nan = np.nan
    counts = dict(left_out=left_out, nan_dropped=nan_dropped, family=family)
    estimate = float(np.mean(a) - np.mean(r)) if len(a) and len(r) else nan
    if min(len(a), len(r)) < 2:
        return Difference(metric, higher_is_better, margin, len(a), len(r), False, False,
                          estimate, nan, nan, nan, nan, True, nan, nan, nan, nan, nan, nan,
                          nan, nan, None, **counts)
    improvement = probability_of_improvement(a, r, higher_is_better)
    if paired and identical and agree_to_round_off(a, r):
        return Difference(metric, higher_is_better, margin, len(a), len(r), True, True,
                          estimate, estimate, estimate, nan, nan, True, nan, nan, nan, nan,
                          nan, *improvement, None, **counts)
    return Difference(
        metric, higher_is_better, margin, len(a), len(r), paired, False, estimate,
        *t_interval(a, r, paired), *permutation_p(a, r, paired),
        tost_p(a, r, paired, margin), *tost_interval(a, r, paired),
        *_bootstrap_interval(a, r, paired), *improvement,
        seeds_needed(a, r, paired, margin, family=family), **counts)


def adjust(differences: list[Difference]) -> list[Difference]:
    """The same differences with Holm-adjusted p (of ``p_verdict``) and p_TOST over the
    whole family."""
    p = holm([d.p_verdict for d in differences])
    p_tost = holm([d.p_tost for d in differences])
    return [replace(d, p_adjusted=pa, p_tost_adjusted=pt)
            for d, pa, pt in zip(differences, p, p_tost, strict=True)]

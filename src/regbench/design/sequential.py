"""Decided verdicts on fresh seeds: every comparison looked at after each round of seeds, so
that seeds are added until each comparison is settled, at stated error rates.

Plan. Seeds are trained in rounds (``Schedule``: a first look, then fixed increments, up to a
budget ``max_seeds``); after each round every comparison of the study (each arm against the
reference, on each TESTED metric) is looked at, and the study stops as soon as every one is
decided, or at the budget. For one comparison, d_s = a_s - r_s over the n seeds both arms have,
assumed independent across seeds with unknown mean delta and sd sigma; with m comparisons each
is tested at alpha/m (Bonferroni: every decision of the family holds at once with probability
>= 1 - alpha, under any dependence).

Design ``group-sequential`` (the default). Repeated confidence intervals (Jennison and Turnbull
2000, ch. 9) from error-spending boundaries over the planned looks (``spending``, O'Brien-
Fleming type): at look k, with n_k seeds and information fraction n_k / max_seeds,

    RCI_k = mean(d) -/+ c_k * sd(d) / sqrt(n_k),

c_k the look's boundary for the t statistic (``spending.t_boundaries`` over the schedule's looks
so far, spending alpha/m on |T|). RCI_k covers delta at every look at once with probability
>= 1 - alpha/m, so at the look where the comparison stops, however it was chosen; it is the
interval reported. For equivalence, two one-sided tests (TOST) each of level alpha/m with the
same spending (boundaries on T, one-sided): the TOST interval inside (-margin, +margin). The
error rate is spent by the budget's last look: a study that goes past ``max_seeds`` needs
``anytime``. The Monte Carlo boundaries are exact for normal differences; the usual shortcut,
each z boundary carried to the t scale alone, spends about 6% more than alpha.

Design ``anytime``. An anytime-valid confidence sequence for any number of looks, planned or
not: the Bayes factor of the t-test with a normal prior N(0, g) on the standardised effect
(delta - mu) / sigma and the right-Haar prior 1/sigma (Rouder, Speckman, Sun, Morey and Iverson
2009, eq. 1 with g fixed), with t_n(mu) = (mean(d) - mu) / (sd(d) / sqrt(n)) and nu = n - 1,

    B_n(t) = (1 + n g)^(-1/2) * ((1 + t^2 / nu) / (1 + t^2 / (nu (1 + n g))))^((nu + 1) / 2),

is a test martingale under delta = mu in the filtration of the scale-invariant statistics
(Perez-Ortiz, Lardy, de Heide and Grunwald 2024), so by Ville's inequality
CS_n = mean(d) -/+ c_n(alpha) * sd(d) / sqrt(n), c_n(alpha) the t where B_n(t) = 1/alpha, covers
delta at every n at once with probability >= 1 - alpha. ``G`` = 1. It spends only part of its
error rate over a budget's few looks (reports/sequential-design/simulation.md).

Decisions, with each interval at its level (``decisions``):

* identical: the arms agree on every seed and every metric to float32 round-off
  (``comparison.identical``): equivalent, no test (one metric agreeing alone is tested);
* better / worse: the interval excludes 0, and the two-sided sign-flip permutation test agrees
  at alpha/m (a guard where normality fails);
* equivalent: the equivalence interval lies inside (-margin, +margin), and both one-sided
  sign-flip tests of TOST agree at alpha/m;
* both at once: better (worse), by less than the margin;
* otherwise the comparison goes on; at the budget it ends inconclusive with the interval it got
  to.

Values recorded on a grid (accuracy: multiples of one test image) can tie on every seed; the
spread is then floored at the rounding error of a difference of two such values, h / sqrt(6)
for the grid's step h (the smallest gap between the values), so a tie is never a point.
Assumed: independent paired differences, near normal at small n (the sign-flip guard holds the
rest); the simulation (``simulation``, reports/sequential-design/simulation.md) checks error
rates, coverage, seeds and decisions with the real schedules, on normal, discrete, heavy-tailed
and skewed differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as scipy_stats

from regbench.analysis import stats
from regbench.design import spending

G = 1.0
ROUND, MAX_SEEDS = 3, 20
GROUP_SEQUENTIAL, ANYTIME = "group-sequential", "anytime"
DESIGNS = (GROUP_SEQUENTIAL, ANYTIME)
SPENDING = spending.OBRIEN_FLEMING  # chosen by simulation: reports/sequential-design/

IDENTICAL, CONTINUE, BUDGET = "identical", "continue", "budget reached"
# the largest budget a study may ask for: a typo (2000 for 20) would train for days
BUDGET_LIMIT = 200


@dataclass(frozen=True)
class Schedule:
    """The plan: seeds per arm at each look (``first``, then every ``step`` more, up to
    ``max_seeds``; the last look is at max_seeds) and the ``design`` (``DESIGNS``) whose
    boundaries are spent over them."""

    first: int
    step: int = ROUND
    max_seeds: int = MAX_SEEDS
    design: str = GROUP_SEQUENTIAL
    spending: str = SPENDING  # the group-sequential design's (``spending.SPENDING``)

    def __post_init__(self):
        if not 2 <= self.first <= self.max_seeds or self.step < 1:
            raise ValueError(f"schedule: need 2 <= first ({self.first}) <= max_seeds "
                             f"({self.max_seeds}) and step ({self.step}) >= 1")
        if self.max_seeds > BUDGET_LIMIT:
            raise ValueError(f"schedule: max_seeds ({self.max_seeds}) is above the limit of "
                             f"{BUDGET_LIMIT} seeds per arm")
        if self.design not in DESIGNS:
            raise ValueError(f"schedule: design {self.design!r} is not one of "
                             f"{', '.join(DESIGNS)}")
        if self.spending not in spending.SPENDING:
            raise ValueError(f"schedule: spending {self.spending!r} is not one of "
                             f"{', '.join(spending.SPENDING)}")

    def looks(self) -> list[int]:
        sizes = list(range(self.first, self.max_seeds + 1, self.step))
        return sizes if sizes[-1] == self.max_seeds else [*sizes, self.max_seeds]

    @property
    def method(self) -> str:
        """The design in words, for reports."""
        if self.design == ANYTIME:
            return ("anytime-valid t confidence sequence (normal-mixture Bayes factor, g = 1, "
                    "Bonferroni)")
        return (f"group-sequential repeated confidence intervals ({self.spending}-type error "
                "spending over the planned looks, t boundaries, Bonferroni)")

    def critical(self, look: int, seeds: int, alpha: float, sides: int) -> float:
        """The half-width, in standard errors sd(d) / sqrt(seeds), of the design's interval at
        the look of ``look`` seeds per arm (one of ``looks``) with ``seeds`` shared seeds:
        error ``alpha`` in all, split over ``sides`` (2: the reported interval; 1: each bound
        of TOST), as the module's docstring says; infinite when nothing can be bounded yet.
        The anytime sequence is two-sided whatever ``sides`` (each side then errs <= alpha)."""
        if seeds < 2:
            return np.inf
        if self.design == ANYTIME:
            return critical_t(seeds, alpha)
        sizes = tuple(n for n in self.looks() if n <= look)
        if not sizes or sizes[-1] != look:
            raise ValueError(f"schedule: {look} seeds per arm is not one of its looks "
                             f"{self.looks()}")
        planned = spending.t_boundaries(sizes, self.max_seeds, alpha, self.spending, sides)[-1]
        if seeds == look:
            return planned
        # fewer shared seeds than planned (a failed run): the planned boundary's tail
        # probability carried to the seeds there are
        return float(scipy_stats.t.isf(scipy_stats.t.sf(planned, look - 1), seeds - 1))


def schedule_for(family: int, step: int = ROUND, max_seeds: int = MAX_SEEDS,
                 design: str = GROUP_SEQUENTIAL, spending: str = SPENDING) -> Schedule:
    """The default plan of a study of ``family`` comparisons: its first look at the first
    seeds that can decide (``first_decisive_seeds``), then every ``step``."""
    first = min(first_decisive_seeds(family, design), max_seeds)
    return Schedule(first, step, max_seeds, design, spending)


def log_bayes_factor(t: np.ndarray, n: int, g: float = G) -> np.ndarray:
    """log B_n(t), as the module's docstring defines it."""
    nu = n - 1
    t2 = np.square(t)
    return -0.5 * np.log1p(n * g) + (nu + 1) / 2 * (np.log1p(t2 / nu)
                                                   - np.log1p(t2 / (nu * (1 + n * g))))


def critical_t(n: int, alpha: float, g: float = G) -> float:
    """c_n(alpha): the |t| at which B_n reaches 1/alpha; infinite when it never does."""
    target = np.log(1 / alpha)
    if (n - 1) / 2 * np.log1p(n * g) <= target:
        return np.inf
    return float(optimize.brentq(lambda t: log_bayes_factor(t, n, g) - target, 0.0, 1e12))


def first_decisive_seeds(family: int, design: str = GROUP_SEQUENTIAL,
                         alpha: float = 1 - stats.CONFIDENCE) -> int:
    """The fewest seeds per arm at which a comparison of a family of ``family`` can be decided
    at all (here: equivalent): the sign-flip guard's smallest one-sided p, 1 / 2^n, is
    <= alpha / family, and (``anytime``) the confidence sequence has finite width
    (``critical_t``). A budget below it trains without any chance of an answer."""
    level = alpha / max(family, 1)
    n = 2
    while n <= BUDGET_LIMIT and (0.5**n > level or (
            design == ANYTIME and np.isinf(critical_t(n, level)))):
        n += 1
    return n


EXACT_UP_TO = stats.EXACT_SIGN_FLIPS_UP_TO
CELLS = 2**22  # rows x sign patterns held at once


def _patterns(n: int, resamples: int) -> np.ndarray:
    """Every one of the 2^n sign patterns (n <= EXACT_UP_TO), else ``resamples`` drawn with a
    fixed seed."""
    if n <= EXACT_UP_TO:
        return 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    return np.random.default_rng(0).choice([-1.0, 1.0], size=(resamples, n))


def sign_flip_p(d: np.ndarray, alternative: str = "two-sided",
                resamples: int = stats.MONTE_CARLO_SIGN_FLIPS) -> np.ndarray:
    """Per row of ``d`` (rows x n): the sign-flip permutation p of mean = 0, as
    ``stats.permutation_p`` (scipy's) computes it for one row: the share of sign patterns whose
    sum is at least as extreme, exact up to n = 16 (a Monte Carlo beyond, counted as scipy
    does, (k + 1) / (resamples + 1)). Vectorised over rows, for the simulation."""
    d = np.atleast_2d(np.asarray(d, dtype=float))
    patterns = _patterns(d.shape[1], resamples)
    observed = d.sum(axis=1)
    p = np.empty(len(d))
    rows = max(1, CELLS // len(patterns))
    for start in range(0, len(d), rows):
        sums = d[start:start + rows] @ patterns.T
        seen = observed[start:start + rows, None]
        tolerance = 1e-12 * np.maximum(np.abs(seen), 1e-300)  # ties by round-off count
        extreme = {"two-sided": np.abs(sums) >= np.abs(seen) - tolerance,
                   "greater": sums >= seen - tolerance,
                   "less": sums <= seen + tolerance}[alternative]
        count = extreme.sum(axis=1)
        p[start:start + rows] = (count / len(patterns) if d.shape[1] <= EXACT_UP_TO
                                 else (count + 1) / (len(patterns) + 1))
    return p


DIFFERS, WITHIN = "differs", "differs, within the margin"
DECISIONS = (CONTINUE, DIFFERS, stats.EQUIVALENT, WITHIN)  # codes 0-3 of ``decisions``
BY_LESS = "by less than the margin"


def spread_floor(values: np.ndarray) -> float:
    """h / sqrt(6), h the smallest gap between distinct ``values`` (both arms' values of one
    metric): the sd of a difference of two values rounded to a grid of step h. 0 when all are
    equal."""
    gaps = np.diff(np.unique(np.asarray(values, dtype=float)))
    return float(gaps.min() / np.sqrt(6)) if len(gaps) else 0.0


def interval(d: np.ndarray, alpha: float, schedule: Schedule, look: int, sides: int,
             floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per row of paired differences ``d`` (rows x n) at the look of ``look`` seeds per arm:
    mean(d) -/+ c * max(sd(d), floor) / sqrt(n), c = ``schedule.critical(look, n, alpha,
    sides)``: the two-sided interval at error ``alpha`` (``sides`` 2), or the equivalence (TOST)
    interval, each of its sides at ``alpha`` (``sides`` 1; the narrower of the two)."""
    d = np.atleast_2d(np.asarray(d, dtype=float))
    n = d.shape[1]
    error = np.maximum(np.std(d, axis=1, ddof=1), floor) / np.sqrt(n) if n > 1 else np.inf
    critical = schedule.critical(look, n, alpha, sides)
    half = np.full(len(d), np.inf) if np.isinf(critical) else critical * error
    mean = d.mean(axis=1)
    return mean - half, mean + half


def decisions(d: np.ndarray, margin: float, alpha: float, schedule: Schedule, look: int,
              floor: float = 0.0, resamples: int = stats.MONTE_CARLO_SIGN_FLIPS):
    """Per row of paired differences ``d`` (rows x n) at the look of ``look`` seeds per arm:
    (code, low, high, tost_low, tost_high), the code indexing DECISIONS, (low, high) the
    reported two-sided ``interval`` at error ``alpha``, (tost_low, tost_high) the equivalence
    ``interval`` (each side at ``alpha``), the spread floored at ``floor``. Bit 1: the interval
    excludes 0 and the two-sided sign-flip p is <= alpha; bit 2: the equivalence interval lies
    inside (-margin, margin) and both one-sided sign-flip tests are <= alpha."""
    d = np.atleast_2d(np.asarray(d, dtype=float))
    low, high = interval(d, alpha, schedule, look, 2, floor)
    code = np.zeros(len(d), dtype=int)
    differs = np.flatnonzero((low > 0) | (high < 0))
    if len(differs):
        allowed = sign_flip_p(d[differs], "two-sided", resamples) <= alpha
        code[differs[allowed]] = 1
    tost_low, tost_high = interval(d, alpha, schedule, look, 1, floor)
    inside = np.flatnonzero((tost_low > -margin) & (tost_high < margin))
    if len(inside):
        p = np.maximum(sign_flip_p(d[inside] + margin, "greater", resamples),
                       sign_flip_p(d[inside] - margin, "less", resamples))
        code[inside[p <= alpha]] += 2
    return code, low, high, tost_low, tost_high


@dataclass(frozen=True)
class Look:
    """One comparison at one look: its seeds, estimate and interval, and what it decided."""

    metric: str
    seeds: int
    estimate: float
    low: float
    high: float
    decision: str  # better, worse, equivalent, identical, continue, or "better, by less ..."
    # the equivalence (TOST) interval, each side at the look's error: what equivalence reads
    equivalence_low: float = -np.inf
    equivalence_high: float = np.inf

    @property
    def decided(self) -> bool:
        return self.decision != CONTINUE

    @property
    def says_equivalent(self) -> bool:
        """Whether the verdict rests on the equivalence interval lying inside the margins."""
        return self.decision in (stats.EQUIVALENT, IDENTICAL) or self.decision.endswith(BY_LESS)


def decide(metric: str, arm: dict, reference: dict, higher_is_better: bool, margin: float,
           family: int, schedule: Schedule, look: int, identical: bool = False) -> Look:
    """Look at one comparison (arm and reference: seed -> value, NaN already dropped) on the
    seeds both have, at the look of ``look`` seeds per arm of ``schedule``, at error
    alpha/family, as the module's docstring says; ``identical``: the arms' runs agree to
    round-off on every metric."""
    shared = stats.shared_seeds(arm, reference)
    a = np.array([arm[s] for s in shared], dtype=float)
    r = np.array([reference[s] for s in shared], dtype=float)
    if len(shared) < 2:
        return Look(metric, len(shared), np.nan, -np.inf, np.inf, CONTINUE)
    estimate = float(np.mean(a - r))
    if identical and stats.agree_to_round_off(a, r):
        return Look(metric, len(shared), estimate, estimate, estimate, IDENTICAL, estimate,
                    estimate)
    alpha, floor = (1 - stats.CONFIDENCE) / family, spread_floor(np.concatenate([a, r]))
    code, low, high, equivalence_low, equivalence_high = decisions(
        (a - r)[None, :], margin, alpha, schedule, look, floor)
    decision = DECISIONS[code[0]]
    if decision in (DIFFERS, WITHIN):
        direction = stats.BETTER if (estimate > 0) == higher_is_better else stats.WORSE
        decision = direction if decision == DIFFERS else f"{direction}, {BY_LESS}"
    return Look(metric, len(shared), estimate, float(low[0]), float(high[0]), decision,
                float(equivalence_low[0]), float(equivalence_high[0]))

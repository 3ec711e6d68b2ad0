"""Decided verdicts on fresh seeds: an anytime-valid confidence sequence per comparison, looked
at after every round of seeds, so that seeds can be added until each comparison is settled
without inflating the error rates.

Design. Seeds are trained in rounds (``Schedule``: a first round, then fixed increments, up to a
budget ``max_seeds``); after each round every comparison of the study (each arm against the
reference, on each TESTED metric) is looked at, and the study stops as soon as every one is
decided, or at the budget.

Method. For one comparison, d_s = a_s - r_s over the n seeds both arms have, assumed independent
across seeds and normal with unknown mean delta and sd sigma. For a candidate mu let
t_n(mu) = (mean(d) - mu) / (sd(d) / sqrt(n)) and nu = n - 1. The Bayes factor of the t-test with
a normal prior N(0, g) on the standardised effect (delta - mu) / sigma and the right-Haar prior
1/sigma on sigma (Rouder, Speckman, Sun, Morey and Iverson 2009, eq. 1 with g fixed) is

    B_n(t) = (1 + n g)^(-1/2) * ((1 + t^2 / nu) / (1 + t^2 / (nu (1 + n g))))^((nu + 1) / 2).

Under delta = mu it is a test martingale in the filtration of the scale-invariant statistics
(Perez-Ortiz, Lardy, de Heide and Grunwald 2024, "E-statistics, group invariance and anytime
valid testing"; Lai 1976 built the same confidence sequences), so Ville's inequality gives
P(B_n >= 1/alpha for some n) <= alpha. Inverting it,

    CS_n = { mu : B_n(t_n(mu)) < 1/alpha } = mean(d) -/+ c_n(alpha) * sd(d) / sqrt(n),

with c_n(alpha) the t where B_n(t) = 1/alpha (infinite while (1 + n g)^(nu/2) <= 1/alpha: too
few seeds to decide anything), covers delta at every n at once with probability >= 1 - alpha:
so at the look where the study stops, however that look was chosen. ``G`` = 1: effects of
interest are about one sd of the seed-to-seed differences (a margin's size).

Decisions, with m comparisons in the study and each CS at level 1 - alpha/m (Bonferroni: all m
cover at once with probability >= 1 - alpha, so the family-wise error of every decision below
is <= alpha under any stopping):

* identical: the arms agree on every seed and every metric to float32 round-off
  (``comparison.identical``): equivalent, no test (one metric agreeing alone is tested);
* better / worse: the CS excludes 0, and the sign-flip permutation test agrees at alpha/m (a
  guard where normality fails: a zero spread would make the CS a point);
* equivalent: the CS lies inside (-margin, +margin), and both one-sided permutation tests of
  TOST agree at alpha/m;
* otherwise the comparison goes on; at the budget it ends "budget reached" with the CS it got to.

Assumed: normal, independent paired differences. The CS relies on normality at small n;
accuracy differences are discrete (multiples of 1/test-set size), which the permutation guard
covers. The simulation (``simulate``, tests/test_sequential.py, reports/sequential-design/)
checks the error rates, coverage, seeds spent and power with the real schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from regbench.analysis import stats

G = 1.0
FIRST_ROUND, ROUND, MAX_SEEDS = 5, 3, 20
METHOD = "anytime-valid t confidence sequence (normal-mixture Bayes factor, g = 1, Bonferroni)"

IDENTICAL, CONTINUE, BUDGET = "identical", "continue", "budget reached"
# the largest budget a study may ask for: a typo (2000 for 20) would train for days
BUDGET_LIMIT = 200


@dataclass(frozen=True)
class Schedule:
    """Seeds per arm at each look: ``first``, then every ``step`` more, up to ``max_seeds``
    (the last look is at max_seeds)."""

    first: int = FIRST_ROUND
    step: int = ROUND
    max_seeds: int = MAX_SEEDS

    def __post_init__(self):
        if not 2 <= self.first <= self.max_seeds or self.step < 1:
            raise ValueError(f"schedule: need 2 <= first ({self.first}) <= max_seeds "
                             f"({self.max_seeds}) and step ({self.step}) >= 1")
        if self.max_seeds > BUDGET_LIMIT:
            raise ValueError(f"schedule: max_seeds ({self.max_seeds}) is above the limit of "
                             f"{BUDGET_LIMIT} seeds per arm")

    def looks(self) -> list[int]:
        sizes = list(range(self.first, self.max_seeds + 1, self.step))
        return sizes if sizes[-1] == self.max_seeds else [*sizes, self.max_seeds]


DEFAULT_SCHEDULE = Schedule()


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


def first_decisive_seeds(family: int, alpha: float = 1 - stats.CONFIDENCE) -> int:
    """The fewest seeds per arm at which a comparison of a family of ``family`` can be decided
    at all (better, worse or equivalent): the CS has finite width (``critical_t``) and the
    sign-flip guard's smallest one-sided p, 1 / 2^n, is <= alpha / family. A budget below it
    trains without any chance of an answer."""
    level = alpha / max(family, 1)
    n = 2
    while n <= BUDGET_LIMIT and (np.isinf(critical_t(n, level)) or 0.5**n > level):
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


DECISIONS = (CONTINUE, "differs", stats.EQUIVALENT)  # codes 0, 1, 2 of ``decisions``


def decisions(d: np.ndarray, margin: float, alpha: float,
              resamples: int = stats.MONTE_CARLO_SIGN_FLIPS):
    """Per row of paired differences ``d`` (rows x n): (code, low, high), the code indexing
    DECISIONS: 1 when the CS at level 1 - alpha excludes 0 and the two-sided sign-flip p is
    <= alpha; 2 when the CS lies inside (-margin, margin) and both one-sided sign-flip tests of
    TOST are <= alpha; else 0."""
    d = np.atleast_2d(np.asarray(d, dtype=float))
    n = d.shape[1]
    critical = critical_t(n, alpha)  # infinite: the CS is the whole line, whatever the spread
    half = np.full(len(d), np.inf) if np.isinf(critical) else (
        critical * np.std(d, axis=1, ddof=1) / np.sqrt(n))
    mean = d.mean(axis=1)
    low, high = mean - half, mean + half
    code = np.zeros(len(d), dtype=int)
    differs = np.flatnonzero((low > 0) | (high < 0))
    if len(differs):
        allowed = sign_flip_p(d[differs], "two-sided", resamples) <= alpha
        code[differs[allowed]] = 1
    inside = np.flatnonzero((low > -margin) & (high < margin))
    if len(inside):
        p = np.maximum(sign_flip_p(d[inside] + margin, "greater", resamples),
                       sign_flip_p(d[inside] - margin, "less", resamples))
        code[inside[p <= alpha]] = 2
    return code, low, high


@dataclass(frozen=True)
class Look:
    """One comparison at one look: its seeds, estimate and CS, and what it decided."""

    metric: str
    seeds: int
    estimate: float
    low: float
    high: float
    decision: str  # better, worse, equivalent, identical or continue

    @property
    def decided(self) -> bool:
        return self.decision != CONTINUE


def decide(metric: str, arm: dict, reference: dict, higher_is_better: bool, margin: float,
           family: int, identical: bool = False) -> Look:
    """Look at one comparison (arm and reference: seed -> value, NaN already dropped) on the
    seeds both have, with its CS at level 1 - alpha/family, as the module's docstring says;
    ``identical``: the arms' runs agree to round-off on every metric."""
    shared = stats.shared_seeds(arm, reference)
    a = np.array([arm[s] for s in shared], dtype=float)
    r = np.array([reference[s] for s in shared], dtype=float)
    if len(shared) < 2:
        return Look(metric, len(shared), np.nan, -np.inf, np.inf, CONTINUE)
    estimate = float(np.mean(a - r))
    if identical and stats.agree_to_round_off(a, r):
        return Look(metric, len(shared), estimate, estimate, estimate, IDENTICAL)
    code, low, high = decisions((a - r)[None, :], margin, (1 - stats.CONFIDENCE) / family)
    decision = DECISIONS[code[0]]
    if decision == "differs":
        decision = stats.BETTER if (estimate > 0) == higher_is_better else stats.WORSE
    return Look(metric, len(shared), estimate, float(low[0]), float(high[0]), decision)

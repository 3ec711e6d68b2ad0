"""Simulated studies of the sequential designs, with their real schedules of looks and budget:
how often they err, how often their intervals cover the truth where a study stops, how many
seeds they spend and how often they decide.

A study holds ``family`` comparisons, each of paired differences delta + spread * e per seed,
e independent with mean 0 and sd 1 drawn from one of ``DISTRIBUTIONS`` (Bonferroni, which the
designs use, holds under any dependence). Units: the margin = 1, so ``spread`` is the
seed-to-seed sd of the differences over the margin (test accuracy in the small-data MNIST
studies: about 1). The designs compared (``PLANS``): regbench's group-sequential design
(O'Brien-Fleming-type spending, first look at the first decisive seeds), the same with Pocock-
type spending, the anytime-valid confidence sequence with its former looks (5, 8, ..., 20 seeds),
and the fixed design of 5 seeds (one look, the t interval at alpha/m with the sign-flip guard).

``regbench simulate`` writes reports/sequential-design/simulation.md, which docs/statistics.md
and README.md quote; tests/test_sequential.py checks a fast seeded version and one published row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from regbench.analysis import stats
from regbench.design import sequential, spending
from regbench.locations import REPORTS_DIR

REPORT = REPORTS_DIR / "sequential-design" / "simulation.md"
STUDIES = 10_000  # the standard error of a 5% error rate is 0.0022
MARGIN = 1.0
STEP = 0.1  # "discrete": differences of accuracies on 10,000 test images, margin 0.001


def _t3(rng, size):  # heavy tails: t with 3 degrees of freedom, sd 1
    return rng.standard_t(3, size) / np.sqrt(3.0)


def _skewed(rng, size):  # gamma with shape 2 (skewness 1.41), mean 0, sd 1
    return (rng.gamma(2.0, 1.0, size) - 2.0) / np.sqrt(2.0)


DISTRIBUTIONS: dict[str, Callable] = {
    "normal": lambda rng, size: rng.standard_normal(size),
    "discrete": lambda rng, size: rng.standard_normal(size),  # then rounded to STEP
    "t3": _t3,
    "skewed": _skewed,
}


@dataclass(frozen=True)
class Plan:
    """A design with its looks, as a study with ``family`` comparisons runs it."""

    name: str
    schedule: Callable[[int], sequential.Schedule]


PLANS = (
    Plan("group-sequential, O'Brien-Fleming (regbench)", sequential.schedule_for),
    Plan("group-sequential, Pocock",
         lambda family: sequential.schedule_for(family, spending=spending.POCOCK)),
    Plan("anytime CS, looks 5-20 (before)",
         lambda family: sequential.Schedule(5, design=sequential.ANYTIME)),
    Plan("fixed, 5 seeds", lambda family: sequential.Schedule(5, max_seeds=5)),
)


@dataclass(frozen=True)
class Outcome:
    """What ``simulate`` found over its studies: error rates per study (any comparison), the
    rest per comparison unless it says per study."""

    studies: int
    false_differs: float     # studies with a better/worse of the wrong sign (any, at delta 0)
    false_equivalent: float  # studies with an equivalence although |delta| >= the margin
    coverage_all: float      # studies whose reported intervals all cover delta
    decided: float           # comparisons decided (correctly or not)
    correct: float           # comparisons decided rightly: equivalent when |delta| < margin,
    #                          better/worse of the right sign when delta != 0
    seeds: float             # mean seeds per arm when the study stopped


def differences(delta: float, spread: float, distribution: str, rows: int, seeds: int,
                seed: int) -> np.ndarray:
    """rows x seeds paired differences delta + spread * e (``DISTRIBUTIONS``); "discrete"
    rounds them to multiples of STEP, as accuracies on a 10,000-image test set are."""
    rng = np.random.default_rng(seed)
    d = delta + spread * DISTRIBUTIONS[distribution](rng, (rows, seeds))
    return np.round(d / STEP) * STEP if distribution == "discrete" else d


def simulate(delta: float, spread: float = 1.0, family: int = 4, distribution: str = "normal",
             plan: Plan = PLANS[0], studies: int = STUDIES, seed: int = 0,
             resamples: int = 2_000) -> Outcome:
    """``studies`` simulated studies of ``plan`` at true difference ``delta`` (margin 1): each
    comparison's decision is the first look that decides it (its interval then is the one
    reported; an undecided one reports its interval at the last look); the study stops at the
    first look where every comparison is decided, or at the budget."""
    schedule = plan.schedule(family)
    d = differences(delta, spread, distribution, studies * family, schedule.max_seeds, seed)
    floor = STEP / np.sqrt(6) if distribution == "discrete" else 0.0
    alpha = (1 - stats.CONFIDENCE) / family
    code = np.zeros(len(d), dtype=int)
    low, high = np.full(len(d), -np.inf), np.full(len(d), np.inf)
    stopped = np.full(studies, schedule.max_seeds)
    open_study = np.ones(studies, dtype=bool)
    for n in schedule.looks():
        rows = np.flatnonzero(np.repeat(open_study, family) & (code == 0))
        if not len(rows):
            break
        found, found_low, found_high, *_ = sequential.decisions(
            d[rows, :n], MARGIN, alpha, schedule, n, floor, resamples)
        code[rows] = found
        low[rows], high[rows] = found_low, found_high
        done = (code != 0).reshape(studies, family).all(axis=1) & open_study
        stopped[done] = n
        open_study &= ~done
    differs, equivalent = (code & 1) == 1, (code & 2) == 2
    sign = np.where(low > 0, 1.0, np.where(high < 0, -1.0, 0.0))  # a better/worse's side
    wrong = differs & ((delta == 0) | (sign != np.sign(delta)))
    false_equivalent = equivalent & (abs(delta) >= MARGIN)
    right = ((equivalent & (abs(delta) < MARGIN))
             | (differs & (delta != 0) & (sign == np.sign(delta))))
    covered = (low <= delta) & (delta <= high)
    per_study = lambda mask: float(mask.reshape(studies, family).any(axis=1).mean())  # noqa: E731
    return Outcome(studies, per_study(wrong), per_study(false_equivalent),
                   float(covered.reshape(studies, family).all(axis=1).mean()),
                   float((code != 0).mean()), float(right.mean()), float(stopped.mean()))


def naive_differs(delta: float = 0.0, studies: int = STUDIES, seed: int = 0) -> float:
    """Share of single comparisons called different by the naive rule: after every look of
    the former plan (5, 8, ..., 20 seeds), the fixed-sample paired t-test at 5%, stopping at
    the first p < 0.05."""
    d = differences(delta, 1.0, "normal", studies, sequential.MAX_SEEDS, seed)
    rejected = np.zeros(studies, dtype=bool)
    for n in sequential.Schedule(5).looks():
        rejected |= scipy_stats.ttest_1samp(d[:, :n], 0.0, axis=1).pvalue < 1 - stats.CONFIDENCE
    return float(rejected.mean())


# the scenarios of the published table: (delta, spread, family, distribution)
SCENARIOS = (
    *[(delta, spread, 4, "normal") for spread in (0.5, 1.0, 2.0, 4.0)
      for delta in (0.0, 1.0, 2.0)],
    *[(delta, 1.0, family, "normal") for family in (2, 12) for delta in (0.0, 1.0, 2.0)],
    *[(delta, 1.0, 4, distribution) for distribution in ("discrete", "t3", "skewed")
      for delta in (0.0, 1.0, -1.0, 2.0)],
)
HEADER = ("| true difference | spread | comparisons | differences | design | false better/worse "
          "| false equivalent | intervals all cover | decided | decided rightly | seeds per arm |")


def row(delta: float, spread: float, family: int, distribution: str, plan: Plan,
        studies: int = STUDIES) -> str:
    """One line of the table: ``simulate`` of one scenario and plan."""
    o = simulate(delta, spread, family, distribution, plan, studies)
    return (f"| {delta:+g} | {spread:g} | {family} | {distribution} | {plan.name} | "
            f"{o.false_differs:.4f} | {o.false_equivalent:.4f} | {o.coverage_all:.4f} | "
            f"{o.decided:.4f} | {o.correct:.4f} | {o.seeds:.1f} |")


def table(studies: int = STUDIES) -> str:
    """The report: every scenario under every plan, in Markdown."""
    lines = [
        f"Simulated studies ({studies} per row; margin 1: the true difference and the spread, "
        "the sd of the paired differences across seeds, are in margins). Error rates are per "
        "study (any of its comparisons): false better/worse is a better/worse of the wrong "
        "sign (any, at difference 0), false equivalent an equivalence at a difference of at "
        "least the margin; both should be <= 0.05. \"Intervals all cover\": studies whose "
        "reported intervals all hold the truth (>= 0.95). \"Decided\" and \"decided rightly\" "
        "are per comparison (rightly: equivalent inside the margin, better/worse of the right "
        "sign at any non-zero difference); "
        "seeds per arm: mean, at the study's stop, of a budget of 20 (5 for the fixed design).",
        "", "Differences: normal; discrete (rounded to a tenth of the margin, as accuracies "
        "on 10,000 test images against a margin of 0.001); t3 (t with 3 degrees of freedom, "
        "scaled to sd 1); skewed (gamma, shape 2).", "",
        HEADER, "|---|---|---|---|---|---|---|---|---|---|---|",
        *[row(*scenario, plan, studies) for scenario in SCENARIOS for plan in PLANS],
        "", "Without a design: re-testing with the fixed-sample t-test at 5% after every look "
        f"(5, 8, ..., 20 seeds) calls {naive_differs():.4f} of single null comparisons "
        "different.",
    ]
    return "\n".join(lines) + "\n"

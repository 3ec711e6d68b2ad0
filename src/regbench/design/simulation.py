"""Simulated studies of the sequential design, with its real schedule of looks and budget: how
often it errs, how often its interval covers the truth at the look where it stops, how many
seeds it spends and how often it decides, beside the fixed 5-seed design and the naive rule of
re-testing with the fixed-sample t-test after every round.

A study holds ``family`` comparisons (the notebook's study: 2 arms x 2 metrics = 4), each of
paired differences N(delta, sigma^2) per seed, independent (Bonferroni, which the design uses,
holds under any dependence). Units: sigma = 1 and the margin = 1, i.e. the seed-to-seed sd of the
differences is the margin's size, as in the published studies (test accuracy: sd about 0.0008
against a margin of 0.001).

``regbench simulate`` writes reports/sequential-design/simulation.md, which
docs/architecture.md and README.md quote.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from regbench.analysis import stats
from regbench.design import sequential
from regbench.locations import REPORTS_DIR

REPORT = REPORTS_DIR / "sequential-design" / "simulation.md"
FAMILY = 4
STUDIES = 2000


@dataclass(frozen=True)
class Outcome:
    """What ``simulate`` found over its studies, per comparison unless it says per study."""

    delta: float
    studies: int
    family: int
    differs: float          # share deciding better or worse
    differs_any: float      # share of studies with a better/worse decision
    equivalent: float       # share deciding equivalent
    equivalent_any: float   # share of studies with an equivalent decision
    correct_sign: float     # share deciding better or worse with delta's sign
    coverage: float         # share whose reported interval covers delta
    coverage_all: float     # share of studies whose intervals all cover delta
    seeds: float            # mean seeds per arm when the study stopped
    budget_reached: float   # share of studies that reached the budget undecided


def simulate(delta: float, schedule: sequential.Schedule = sequential.DEFAULT_SCHEDULE,
             family: int = FAMILY, studies: int = STUDIES, seed: int = 0,
             resamples: int = 2_000) -> Outcome:
    """``studies`` simulated studies of the sequential design at true difference ``delta``
    (sigma = margin = 1): each comparison's decision is the first look that decides it (its
    CS then is the one reported; an undecided one reports its CS at the last look); the study
    stops at the first look where every comparison is decided, or at the budget."""
    rng = np.random.default_rng(seed)
    d = rng.normal(delta, 1.0, size=(studies * family, schedule.max_seeds))
    alpha = (1 - stats.CONFIDENCE) / family
    code = np.zeros(len(d), dtype=int)
    low, high = np.full(len(d), -np.inf), np.full(len(d), np.inf)
    stopped = np.full(studies, schedule.max_seeds)
    open_study = np.ones(studies, dtype=bool)
    for n in schedule.looks():
        rows = np.flatnonzero(np.repeat(open_study, family) & (code == 0))
        if not len(rows):
            break
        found, found_low, found_high = sequential.decisions(d[rows, :n], 1.0, alpha, resamples)
        code[rows] = found
        low[rows], high[rows] = found_low, found_high
        done = (code != 0).reshape(studies, family).all(axis=1) & open_study
        stopped[done] = n
        open_study &= ~done
    differs, equivalent = code == 1, code == 2
    covered = (low <= delta) & (delta <= high)
    sign = np.sign(d.mean(axis=1)) == np.sign(delta)  # a decided row's estimate has its sign
    per_study = lambda mask: float(mask.reshape(studies, family).any(axis=1).mean())  # noqa: E731
    return Outcome(delta, studies, family, float(differs.mean()), per_study(differs),
                   float(equivalent.mean()), per_study(equivalent),
                   float((differs & sign).mean()) if delta else 0.0, float(covered.mean()),
                   float(covered.reshape(studies, family).all(axis=1).mean()),
                   float(stopped.mean()), float(open_study.mean()))


def fixed_design_differs(delta: float, seeds: int = 5, family: int = FAMILY,
                         studies: int = STUDIES, seed: int = 0) -> float:
    """Share of comparisons that ``make compare``'s fixed-sample rule calls better or worse
    with ``seeds`` seeds: p = max(paired t-test, sign flips), Holm over the study's family."""
    rng = np.random.default_rng(seed)
    d = rng.normal(delta, 1.0, size=(studies * family, seeds))
    p_t = scipy_stats.ttest_1samp(d, 0.0, axis=1).pvalue
    p = np.maximum(p_t, sequential.sign_flip_p(d)).reshape(studies, family)
    order = np.argsort(p, axis=1)
    ranked = np.take_along_axis(p, order, axis=1) * (family - np.arange(family))
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, np.minimum(1, np.maximum.accumulate(ranked, axis=1)),
                      axis=1)
    return float((adjusted < 1 - stats.CONFIDENCE).mean())


def naive_differs(delta: float, schedule: sequential.Schedule = sequential.DEFAULT_SCHEDULE,
                  studies: int = STUDIES, seed: int = 0) -> float:
    """Share of single comparisons called different by the naive rule: after every round of
    the schedule, the fixed-sample paired t-test at 5%, stopping at the first p < 0.05."""
    rng = np.random.default_rng(seed)
    d = rng.normal(delta, 1.0, size=(studies, schedule.max_seeds))
    rejected = np.zeros(studies, dtype=bool)
    for n in schedule.looks():
        rejected |= scipy_stats.ttest_1samp(d[:, :n], 0.0, axis=1).pvalue < 1 - stats.CONFIDENCE
    return float(rejected.mean())


def table(schedule: sequential.Schedule = sequential.DEFAULT_SCHEDULE) -> str:
    """The report: the design's error rates, coverage, seeds and power, and the two rules it
    replaces, in Markdown."""
    null, at_margin, twice = (simulate(delta, schedule) for delta in (0.0, 1.0, 2.0))
    looks = ", ".join(map(str, schedule.looks()))
    lines = [
        f"Simulated studies of the sequential design ({STUDIES} studies per row, {FAMILY} "
        f"comparisons each, looks at {looks} seeds per arm; paired differences N(delta, 1), "
        "margin 1; method: " + sequential.METHOD + ").", "",
        "| true difference | what is measured | sequential design | goal |",
        "|---|---|---|---|",
        f"| 0 | studies with a false better/worse | {null.differs_any:.4f} | <= 0.05 |",
        f"| 0 | comparisons whose reported interval covers the truth | {null.coverage:.4f} | "
        ">= 0.95 |",
        f"| 0 | studies whose intervals all cover the truth | {null.coverage_all:.4f} | "
        ">= 0.95 |",
        f"| 0 | comparisons decided equivalent | {null.equivalent:.4f} | |",
        f"| 0 | mean seeds per arm at the stop | {null.seeds:.1f} | |",
        f"| 1 (the margin) | comparisons falsely decided equivalent | {at_margin.equivalent:.4f} "
        "| <= 0.05 |",
        f"| 1 (the margin) | comparisons whose reported interval covers the truth | "
        f"{at_margin.coverage:.4f} | >= 0.95 |",
        f"| 2 (twice the margin) | comparisons decided better/worse with the right sign | "
        f"{twice.correct_sign:.4f} | |",
        f"| 2 (twice the margin) | comparisons whose reported interval covers the truth | "
        f"{twice.coverage:.4f} | >= 0.95 |",
        f"| 2 (twice the margin) | mean seeds per arm at the stop | {twice.seeds:.1f} | |",
        f"| 2 (twice the margin) | studies that reached the budget undecided | "
        f"{twice.budget_reached:.4f} | |",
        "", "The rules it replaces:", "",
        "| rule | true difference | comparisons called better/worse |", "|---|---|---|",
        f"| fixed design, 5 seeds (make compare's rule, Holm over {FAMILY}) | 2 | "
        f"{fixed_design_differs(2.0):.4f} |",
        f"| naive: the fixed-sample t-test at 5% after every round, one comparison | 0 | "
        f"{naive_differs(0.0, schedule):.4f} |",
    ]
    return "\n".join(lines) + "\n"

"""The arms of a set of recorded runs, their summaries and their differences to a reference arm.

Pure: takes the table ``regbench.analysis.query`` read and returns a ``Comparison``; no store,
no output.
An arm is one configuration apart from the seed, labelled by its regularizer's name and
strengths (``l2-0.0001``) and, where runs of one label differ in more, by what differs
(``query.split_mixed_arms``); each run is one seed of its arm. Each arm other than the
reference is compared with it on the TESTED metrics with
``regbench.analysis.stats``, and all those tests are one family for Holm's correction.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from regbench import record
from regbench.analysis import stats
from regbench.analysis.query import RecordedRuns
from regbench.errors import CompareError
from regbench.locations import CONF_DIR

SUMMARY_METRICS = (record.TEST_ACCURACY, record.TEST_DATA_LOSS, record.TEST_TOTAL_LOSS,
                   "loss", "val_loss", record.TEST_ECE, record.TEST_BRIER,
                   record.EPOCHS_TRAINED)
TESTED = {record.TEST_ACCURACY: True, record.TEST_DATA_LOSS: False}  # higher is better?
# conf/config.yaml's margins (their one home), for comparisons whose caller names none
DEFAULT_MARGINS = {key: float(value) for key, value in
                   OmegaConf.load(CONF_DIR / "config.yaml")["margins"].items()}
DEFAULT_REFERENCE = "l2"  # the arm a comparison is made against unless told


@dataclass(frozen=True)
class Target:
    """A goal on a run's final value of a metric, e.g. ``val_accuracy >= 0.85``."""

    metric: str
    comparison: str
    value: float

    OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}

    @classmethod
    def parse(cls, text: str) -> Target:
        """``"val_accuracy>=0.85"`` -> Target; ValueError naming what is allowed."""
        metrics = (*record.EPOCH_METRICS, *record.FINAL_METRICS)
        match = re.fullmatch(r"\s*(\w+)\s*(>=|<=|>|<)\s*(\S+)\s*", text)
        if not match or match[1] not in metrics:
            raise ValueError(f"--target {text}: must be METRIC>=VALUE (or <=, >, <) with a "
                             f"metric among {', '.join(metrics)}")
        try:
            value = float(match[3])
        except ValueError:
            raise ValueError(f"--target {text}: {match[3]} is not a number") from None
        return cls(match[1], match[2], value)

    def met(self, value: float) -> bool:
        return bool(self.OPERATORS[self.comparison](value, self.value))

    def __str__(self) -> str:
        return f"{self.metric} {self.comparison} {self.value:g}"


@dataclass(frozen=True)
class TargetResult:
    arm: str
    target: Target
    mean: float
    met: int    # runs whose final value meets the target
    runs: int   # runs that have the metric


@dataclass(frozen=True)
class Identical:
    """Two arms whose tested metrics agree on every one of their ``seeds``; ``largest`` is the
    largest absolute difference (0: bit for bit)."""

    arm: str
    other: str
    seeds: int
    largest: float


@dataclass(frozen=True)
class Comparison:
    runs: pd.DataFrame          # one row per run: run_id, arm, seed, metrics.*
    summary: pd.DataFrame       # one row per arm, the reference first
    differences: dict[str, list[stats.Difference]]  # arm -> one Difference per TESTED metric
    reference: str
    identical: tuple[Identical, ...]  # pairs of arms that agree on every seed
    warnings: tuple[str, ...]
    targets: tuple[TargetResult, ...] = ()


def metric_values(group: pd.DataFrame, metric: str) -> pd.Series:
    """The recorded values of ``metric`` in a group of runs (empty when no run has it)."""
    column = f"metrics.{metric}"
    return group[column].dropna() if column in group else pd.Series(dtype=float)


def by_seed(group: pd.DataFrame, metric: str) -> dict:
    """seed -> value of ``metric`` for one arm's runs (one run per seed: ``query.fetch_runs``
    keeps the newest); raises CompareError if a seed repeats."""
    column = f"metrics.{metric}"
    if column not in group:
        return {}
    values = group.dropna(subset=[column])
    if not values["seed"].is_unique:
        raise CompareError(f"arm {values['arm'].iloc[0]} has more than one run of a seed")
    return dict(zip(values["seed"], values[column], strict=True))


def resolve_reference(reference: str | None, arms: list[str]) -> str:
    """The arm ``reference`` names: an arm label, or a regularizer name with exactly one arm
    (the first arm when None)."""
    if reference is None:
        return arms[0]
    if reference in arms:
        return reference
    named = [arm for arm in arms if record.arm_name(arm) == reference]
    if len(named) == 1:
        return named[0]
    raise CompareError(f"reference arm '{reference}' is not one of the arms ({', '.join(arms)}); "
                       "choose one with --reference")


def _round_off_gap(a: dict, o: dict) -> float | None:
    """The largest |a_s - o_s| over the seeds both have, when they are n >= 2 and the two
    agree on each to round-off (``stats.agree_to_round_off``); else None. Paired as
    ``stats.compare`` pairs: an arm stopped at fewer seeds than the reference is judged on the
    seeds it has."""
    seeds = stats.shared_seeds(a, o)
    if len(seeds) < 2:
        return None
    x, y = np.array([a[s] for s in seeds]), np.array([o[s] for s in seeds])
    return float(np.max(np.abs(x - y))) if stats.agree_to_round_off(x, y) else None


def identical(arm: pd.DataFrame, other: pd.DataFrame) -> bool:
    """The one rule for identical arms: n >= 2 seeds both arms have, and on each every metric
    of TESTED agrees to round-off (``stats.agree_to_round_off``). One metric agreeing alone is not
    enough: an accuracy is a count, and two models can score the same on every seed and still
    differ in their losses."""
    return None not in _round_off_gaps(arm, other)


def _round_off_gaps(arm: pd.DataFrame, other: pd.DataFrame) -> list[float | None]:
    """``_round_off_gap`` of the two arms on each metric of TESTED."""
    return [_round_off_gap(by_seed(arm, m), by_seed(other, m)) for m in TESTED]


def identical_pairs(groups: dict[str, pd.DataFrame]) -> list[Identical]:
    """Each pair of arms whose TESTED metrics agree on every seed, exactly or to within
    ``stats.ROUND_OFF`` (relative): the arm's regularizer changed nothing float32 arithmetic can
    tell apart. ``other`` is the unregularized ``none`` when it is one of the two, else the earlier
    of the two in ``groups``' order."""
    pairs = []
    arms = list(groups)
    for index, arm in enumerate(arms):
        for other in arms[:index]:
            gaps = _round_off_gaps(groups[arm], groups[other])
            if None not in gaps:  # identical(), with the gaps it reads kept for the line
                regularized, control = (other, arm) if arm == "none" else (arm, other)
                first = next(iter(TESTED))
                seeds = stats.shared_seeds(by_seed(groups[arm], first),
                                           by_seed(groups[other], first))
                pairs.append(Identical(regularized, control, len(seeds), max(gaps)))
    return pairs


def _warnings(recorded: RecordedRuns) -> list[str]:
    runs = recorded.runs
    notes = list(recorded.notes)
    if recorded.left_out:
        notes.append(f"{len(recorded.left_out)} run(s) without the tag {record.TAG_ARM} are "
                     "left out: "
                     f"{', '.join(r[:8] for r in recorded.left_out)}")
    for metric in SUMMARY_METRICS:
        column = f"metrics.{metric}"
        missing = runs if column not in runs else runs[runs[column].isna()]
        if len(missing):
            notes.append(f"{len(missing)} run(s) lack {metric} and are left out of that "
                         f"column: {', '.join(missing['run_id'].str[:8])}")
    return notes


def _summary_row(arm: str, group: pd.DataFrame) -> dict:
    row = {"arm": arm, "runs": len(group),
           "seeds": " ".join(str(int(s)) for s in sorted(group["seed"].dropna()))}
    for metric in SUMMARY_METRICS:
        values = metric_values(group, metric)
        row[f"{metric}_mean"] = values.mean() if len(values) else np.nan
        row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
    return row


def target_results(groups: dict[str, pd.DataFrame],
                   targets: tuple[Target, ...]) -> list[TargetResult]:
    """Per arm and target: the mean final value and how many runs meet the target."""
    results = []
    for arm, group in groups.items():
        for target in targets:
            values = metric_values(group, target.metric)
            results.append(TargetResult(arm, target, values.mean() if len(values) else np.nan,
                                        sum(target.met(v) for v in values), len(values)))
    return results


def recorded_margins(runs: pd.DataFrame) -> dict[str, float]:
    """The margins the runs' preset stated (their ``margins.*`` params), per TESTED metric on
    which every run that records one agrees; runs from before the key record none."""
    found = {}
    for metric in TESTED:
        column = f"params.margins.{metric}"
        values = set(runs[column].dropna()) if column in runs else set()
        if len(values) == 1:
            found[metric] = float(values.pop())
    return found


def summarise(recorded: RecordedRuns, reference: str | None,
              margins: dict[str, float] | None = None,
              targets: tuple[Target, ...] = ()) -> Comparison:
    """Each arm's mean and standard deviation, and its differences to ``reference`` on the
    TESTED metrics, within ``margins`` (default: ``recorded_margins``, else DEFAULT_MARGINS),
    Holm-adjusted together; and each arm against ``targets``."""
    runs = recorded.runs
    margins = {**DEFAULT_MARGINS, **recorded_margins(runs), **(margins or {})}
    arms = sorted(runs["arm"].unique())
    reference_arm = resolve_reference(reference, arms)
    order = [reference_arm, *[a for a in arms if a != reference_arm]]
    groups = {arm: runs[runs["arm"] == arm] for arm in order}
    summary = pd.DataFrame([_summary_row(arm, group) for arm, group in groups.items()])
    family = (len(order) - 1) * len(TESTED)
    same = {arm: identical(groups[arm], groups[reference_arm]) for arm in order[1:]}
    raw = [(arm, stats.compare(metric, by_seed(groups[arm], metric),
                               by_seed(groups[reference_arm], metric), higher, margins[metric],
                               family, same[arm]))
           for arm in order[1:] for metric, higher in TESTED.items()]
    adjusted = stats.adjust([difference for _, difference in raw])
    differences: dict[str, list[stats.Difference]] = {arm: [] for arm in order[1:]}
    for (arm, _), difference in zip(raw, adjusted, strict=True):
        differences[arm].append(difference)
    return Comparison(runs, summary, differences, reference_arm,
                      tuple(identical_pairs(groups)), tuple(_warnings(recorded)),
                      tuple(target_results(groups, targets)))

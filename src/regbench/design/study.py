"""``regbench study PRESET`` (``make study``; ``make tuned`` uses ``grow``): arms
compared on fresh seeds, grown in rounds until every comparison is decided.

Each round trains every arm on the seeds of the next look of the schedule
(``sequential.Schedule``: seeds ``start .. start + n - 1``) as multiruns of ``regbench train`` into
one experiment, on the command's one pool of workers (``pool.run_commands``); finished runs are
skipped, so seeds trained before (an earlier study, an interrupted
one) count as the first rounds, and Ctrl-C between or within rounds loses no finished run.
After each round every comparison (each arm against the reference, on each of
``comparison.TESTED``) is looked at with ``sequential.decide``, one line per look says what is
decided and what goes on, and the study stops when all are decided or at the budget. Looks are
recomputed from the store each time, in order (a comparison keeps the first decision it
reaches), so running the command again resumes where it stopped.

It writes ``reports/<experiment>/sequential.md`` after every look (per comparison: the looks,
the seeds, why it stopped, or that it goes on, and the interval it got to) and
sequential.png (``plots.plot_sequential``: the paired differences per seed, each look's
interval, the margins), and at
the end the fixed-sample comparison of the same runs beside it (``compare``: means, curves,
plots).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from regbench import processes, record
from regbench.analysis import query, report, stats
from regbench.analysis.comparison import (
    DEFAULT_MARGINS,
    TESTED,
    by_seed,
    identical,
    resolve_reference,
)
from regbench.analysis.publish import compare_experiment
from regbench.design import pool, sequential
from regbench.locations import ReportFiles
from regbench.run import store
from regbench.run.tracking import git_commit

SEQUENTIAL_REPORT, SEQUENTIAL_FIGURE = "sequential.md", "sequential.png"


@dataclass
class Tracked:
    """One comparison of the study (an arm against a reference on one metric), over the looks
    taken so far; ``label`` names it in reports (the arm, or "arm vs reference" when the study
    has several references)."""

    arm: str
    reference: str
    metric: str
    label: str
    looks: list[sequential.Look] = field(default_factory=list)
    scheduled: list[int] = field(default_factory=list)  # seeds per arm at each look taken

    @property
    def final(self) -> sequential.Look:
        """The first deciding look, else the latest."""
        return next((look for look in self.looks if look.decided), self.looks[-1])

    @property
    def decided(self) -> bool:
        return bool(self.looks) and self.final.decided

    @property
    def stopped_at(self) -> int:
        """The seeds per arm the schedule had at the final look (its runs, failed ones aside;
        ``final.seeds`` counts the seeds both arms finished)."""
        return self.scheduled[self.looks.index(self.final)]


def look_at(runs: pd.DataFrame, schedule: sequential.Schedule, seeds_per_arm: int,
            references: tuple[str, ...], margins: dict[str, float],
            comparisons: dict[tuple[str, str, str], Tracked],
            arms: tuple[str, ...] | None = None) -> None:
    """One look of ``schedule``: every arm (those named in ``arms``, default all but the
    references) against each of ``references`` on ``runs`` (those of the look's
    ``seeds_per_arm`` seeds), appended to ``comparisons`` unless the comparison was decided at
    an earlier look. The family the multiplicity control covers is every such comparison on
    every metric of TESTED."""
    labels = sorted(runs["arm"].unique())
    chosen = [resolve_reference(reference, labels) for reference in references]
    compared = [arm for arm in labels if arm not in chosen
                and (arms is None or record.arm_name(arm) in arms)]
    family = len(compared) * len(chosen) * len(TESTED)
    for reference in chosen:
        control = runs[runs["arm"] == reference]
        for arm in compared:
            group = runs[runs["arm"] == arm]
            same = identical(group, control)
            label = arm if len(chosen) == 1 else f"{arm} vs {reference}"
            for metric, higher in TESTED.items():
                entry = comparisons.setdefault((arm, reference, metric),
                                               Tracked(arm, reference, metric, label))
                if not entry.decided:
                    entry.scheduled.append(seeds_per_arm)
                    entry.looks.append(sequential.decide(
                        metric, by_seed(group, metric), by_seed(control, metric), higher,
                        margins[metric], max(family, 1), schedule, seeds_per_arm, same))


def figure_panels(comparisons: list[Tracked], runs: pd.DataFrame,
                  margins: dict[str, float]) -> list[dict]:
    """``plots.plot_sequential``'s panels: per comparison, its paired differences on ``runs``
    (the last look's), the interval of each look it took, and its margin."""
    panels = []
    for c in comparisons:
        arm = by_seed(runs[runs["arm"] == c.arm], c.metric)
        reference = by_seed(runs[runs["arm"] == c.reference], c.metric)
        taken = c.looks[:c.looks.index(c.final) + 1]
        panels.append({
            "title": f"{c.label} {report.HEADERS[c.metric]}: {c.final.decision}",
            "differences": {s: arm[s] - reference[s] for s in stats.shared_seeds(arm, reference)},
            "looks": [(look.seeds, look.low, look.high) for look in taken],
            "margin": margins[c.metric]})
    return panels


def intervals(look: sequential.Look) -> str:
    """A look's interval as a sentence quotes it: the two-sided one, and beside it the
    equivalence interval when the verdict rests on that (equivalent, by less than the margin)."""
    shown = report.interval_text(look.low, look.high)
    return (f"{shown}, equivalence interval "
            f"{report.interval_text(look.equivalence_low, look.equivalence_high)}"
            if look.says_equivalent else shown)


def look_line(number: int, seeds: int, comparisons: list[Tracked], last: bool) -> str:
    """What a look decided and what goes on, in one line."""
    decided = sum(c.decided for c in comparisons)
    parts = [f"{c.label} {report.HEADERS[c.metric]} {c.final.decision} {intervals(c.final)}"
             for c in comparisons]
    going = ("all decided: the study stops" if decided == len(comparisons) else
             "budget reached: the study stops" if last else "going on")
    return (f"look {number} at {seeds} seeds per arm: {decided} of {len(comparisons)} "
            f"decided; {'; '.join(parts)}; {going}")


def seeds_needed(comparisons: list[Tracked]) -> dict[str, int]:
    """Per arm, the seeds per arm the schedule had at the last look any of its comparisons (as
    arm or as reference) took: what the design trained of it, since decided arms are not trained
    on."""
    needed: dict[str, int] = {}
    for c in comparisons:
        for arm in (c.arm, c.reference):
            needed[arm] = max(needed.get(arm, 0), c.stopped_at)
    return needed


def compute(comparisons: list[Tracked], runs: pd.DataFrame, schedule: sequential.Schedule,
            start: int) -> str:
    """The compute line of sequential.md: the runs the design used (per arm, seeds ``start``
    to ``start + seeds_needed - 1``) and their training minutes, summed over runs (end_time -
    start_time in the store), beside the fixed design's ``schedule.first`` seeds per arm."""
    needed = seeds_needed(comparisons)
    arm_runs = runs[runs["arm"].isin(list(needed))]
    minutes = (arm_runs["end_time"] - arm_runs["start_time"]).dt.total_seconds() / 60
    sequential_runs = arm_runs["seed"] < start + arm_runs["arm"].map(needed)
    fixed_runs = arm_runs["seed"] < start + schedule.first
    return (f"Compute: {int(sequential_runs.sum())} runs, "
            f"{minutes[sequential_runs].sum():.1f} training minutes (summed over runs; parallel "
            f"jobs overlap in wall time), where the fixed design of {schedule.first} seeds per "
            f"arm takes {int(fixed_runs.sum())} runs, {minutes[fixed_runs].sum():.1f} minutes. "
            "Seeds per arm: " + ", ".join(f"{arm} {n}" for arm, n in sorted(needed.items()))
            + ".")


def margins_line(margins: dict[str, float]) -> str:
    """The margins a study judges equivalence by, as its reports state them."""
    return ("Margins (stated in the preset's config before the data): "
            + ", ".join(f"{report.HEADERS[metric]} ±{margins[metric]:g}" for metric in TESTED)
            + ".")


def markdown(comparisons: list[Tracked], schedule: sequential.Schedule, start: int,
             header: str, stopped: bool, runs: pd.DataFrame, margins: dict[str, float]) -> str:
    """sequential.md: the margins and the design, then per comparison its looks, seeds,
    interval, verdict and why it stopped (``stopped`` False: the study goes on, and its
    undecided comparisons say so), then ``compute`` over ``runs`` (those of the looks' seeds).
    The family the error rate is shared by: every comparison of the study."""
    lines = [header.rstrip("\n"), "", margins_line(margins), "",
             f"Sequential design: {schedule.method}, at 95% over a family of {len(comparisons)} "
             f"comparisons; looks at {', '.join(map(str, schedule.looks()))} "
             f"seeds per arm (seeds {start} onwards), stopping when every comparison is decided "
             "or at the budget. Each interval below is the design's interval where its "
             "comparison stopped, valid however the stop was chosen: better or worse when "
             "the interval excludes 0; equivalent when the equivalence interval (two one-sided "
             "tests, each side at the same error, so narrower) lies inside the margins. Looks "
             "are the seeds per arm at each look it took, seeds those both arms finished at "
             "its last (the intervals'). comparison.md beside this file is the fixed-sample "
             "analysis of the same runs (means, curves, plots); its p-values do not account "
             "for the looks, these verdicts do.", "",
             "| arm | metric | looks | seeds | difference | interval | equivalence interval "
             "| verdict | why it stopped |", "|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        final = c.final
        verdict = (stats.INCONCLUSIVE if not final.decided else
                   f"{stats.EQUIVALENT} (identical)" if final.decision == sequential.IDENTICAL
                   else final.decision)
        why = ("decided" if final.decided else sequential.BUDGET if stopped else
               "not yet: the study goes on")
        lines.append(f"| {c.label} | {report.HEADERS[c.metric]} | "
                     f"{', '.join(map(str, c.scheduled[:c.looks.index(final) + 1]))}"
                     f" | {final.seeds} | {final.estimate:+.4f} | "
                     f"{report.interval_text(final.low, final.high)} | "
                     f"{report.interval_text(final.equivalence_low, final.equivalence_high)} | "
                     f"{verdict} | {why} |")
    skewed = skewed_lines(comparisons, runs)
    return "\n".join([*lines, *(["", *skewed] if skewed else []), "",
                      compute(comparisons, runs, schedule, start)]) + "\n"


SKEWED = 1.0  # |sample skewness| of the paired differences above which the report warns


def skewed_lines(comparisons: list[Tracked], runs: pd.DataFrame) -> list[str]:
    """A warning per comparison whose paired differences on ``runs`` are strongly skewed
    (|g1| > SKEWED, scipy's bias-corrected sample skewness, 8 seeds or more): there neither the
    t boundaries nor the sign-flip guard hold the error rates (simulation.md, "skewed")."""
    found = []
    for c in comparisons:
        arm = by_seed(runs[runs["arm"] == c.arm], c.metric)
        reference = by_seed(runs[runs["arm"] == c.reference], c.metric)
        d = [arm[s] - reference[s] for s in stats.shared_seeds(arm, reference)]
        if len(d) >= 8 and np.ptp(d) > 0 and abs(g1 := scipy_stats.skew(d, bias=False)) > SKEWED:
            found.append(f"- warning: {c.label} {report.HEADERS[c.metric]}: its paired "
                         f"differences are skewed (sample skewness {g1:+.2f}); the design's "
                         "error rates are not held for strongly skewed differences "
                         "(reports/sequential-design/simulation.md), so read its verdict with "
                         "the per-seed values (sequential.png, per_seed.csv)")
    return found


def training(comparisons: list[Tracked]) -> frozenset[str]:
    """The regularizers the next round trains: each arm's with an undecided comparison, and the
    references those comparisons need. A decided comparison keeps the verdict and interval of
    the look that decided it (its interval is valid at that stop), so its arm's
    later seeds would be spent for nothing."""
    undecided = [c for c in comparisons if not c.decided]
    return frozenset(record.arm_name(arm) for c in undecided for arm in (c.arm, c.reference))


def grow(commands: Callable[[range, frozenset[str] | None], list[list[str]]], experiment: str,
         reference: str,
         schedule: sequential.Schedule, start: int, out: Path, command: str,
         tracking_uri: str | None, margins: dict[str, float] | None = None,
         versus: tuple[str, ...] = (), arms: tuple[str, ...] | None = None,
         on_stop: Callable[[list[Tracked], pd.DataFrame, list[str]], None] | None = None,
         reuse_stale: bool = False, about: str = "") -> int:
    """Train ``commands(seeds, regularizers)`` look by look and decide, as the module's
    docstring says (``regularizers``: None at the first look, every arm; then ``training``'s);
    write the reports into ``out``. The comparisons: each arm (of the regularizers named in
    ``arms``, default every arm) against ``reference`` and each of ``versus`` (arm labels or
    regularizer names); runs of other arms in the experiment are left out. ``on_stop(comparisons,
    runs, notes)`` is called when the study stops (not on an interrupt) with the comparisons,
    the runs of the last look and the notes on them (``query.fetch_runs``': repeated seeds,
    impossible values, relabelled seeds; ``query.keep_todays_code``'s), which every report's
    head also lists; ``about`` (the preset's description) follows the report's first line. Each
    look analyses the runs of today's code only, unless ``reuse_stale``
    (``query.keep_todays_code``). Returns the worst exit code of the training (130 at once on an
    interrupt), else 0."""
    margins = {**DEFAULT_MARGINS, **(margins or {})}
    references = (reference, *versus)
    kept = None if arms is None else {*arms, *map(record.arm_name, references)}
    comparisons: dict[tuple[str, str, str], Tracked] = {}
    looks = schedule.looks()
    worst, regularizers = 0, None
    for number, n in enumerate(looks, start=1):
        seeds = range(start, start + n)
        code = pool.run_commands(commands(seeds, regularizers),
                                 f"look {number} of {len(looks)}, {n} seeds per arm")
        if code == processes.EXIT_INTERRUPTED:
            return code
        worst = max(worst, code)
        store.connect(tracking_uri, create=False)
        recorded = query.fetch_runs(experiment, None)
        runs = recorded.runs
        used = runs[runs["seed"].isin(list(seeds)) & (
            True if kept is None else runs["arm"].map(record.arm_name).isin(kept))]
        used, code_notes = query.keep_todays_code(used, reuse_stale)
        notes = [*recorded.notes, *code_notes]  # repeats, impossible values, relabelled seeds
        look_at(used, schedule, n, references, margins, comparisons, arms)
        ordered = list(comparisons.values())
        stopped = all(c.decided for c in ordered) or number == len(looks)
        regularizers = training(ordered)
        print(look_line(number, n, ordered, number == len(looks)), file=sys.stderr, flush=True)
        header = report.provenance(command, git_commit(), used, notes)
        if about:  # what the study is, under the line that says how it was made
            made, _, rest = header.partition("\n")
            header = f"{made}\n\n{about}\n{rest}"
        from regbench.analysis.plots import plot_sequential  # matplotlib: only when it draws

        with ReportFiles(out) as stage:
            stage(SEQUENTIAL_REPORT).write_text(
                markdown(ordered, schedule, start, header, stopped, used, margins))
            plot_sequential(figure_panels(ordered, used, margins), stage(SEQUENTIAL_FIGURE))
        if stopped:
            break
    print((out / SEQUENTIAL_REPORT).read_text(), end="")
    ids = ", ".join(f"'{run_id}'" for run_id in used["run_id"])
    compared = compare_experiment(experiment, reference, out, command, tracking_uri,
                                  f"attributes.run_id IN ({ids})", margins,
                                  mix_code=reuse_stale)
    print(compared.markdown, end="")
    if on_stop:
        on_stop(ordered, used, notes)
    return worst

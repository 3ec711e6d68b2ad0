"""``regbench verdict OPTION [--preset PRESET]`` (``make verdict``): one regularizer,
from a registered class to a verdict, in one command.

1. calibrate: OPTION's strength grid on the preset (``calibrate``; L2's too unless the
   preset pins it), logged in the path's experiment: PRESET, or, when the overrides change its
   data or model, the experiment named after them (``presets.experiment_name``);
2. path: OPTION, L2 and ``none`` over their grids on the selection seeds
   (``path.train_commands``), into PRESET, where a path trained before is found, not retrained;
3. select: each strength on validation only (``--rule``: best or 1-SE);
4. compare: OPTION at its strength against ``none`` and against L2 at its own, on fresh seeds
   of its own from ``VERDICT_SEED_START`` in the experiment PRESET-verdict (shared by the
   verdicts of every option, so their runs of none and L2 count; never a tuned comparison's
   seeds, so its family is its own), grown in the rounds of the sequential design
   (``study.grow``) until the four comparisons (two references x test accuracy and test data
   loss) are decided, within the preset's margins;
5. report: reports/OPTION-PRESET/verdict.md opens with one sentence answering the question, then
   the calibration, the path and the comparison; sequential.md and comparison.md beside it.
   It is logged to MLflow as the other reports are.

Running it again skips every finished run, so an interrupted verdict resumes; exit codes are
those of the other commands (2 bad input, 130 Ctrl-C, 1 a failed job).
"""

from __future__ import annotations

import re

import pandas as pd

from regbench import record
from regbench.analysis import report, stats
from regbench.analysis.comparison import DEFAULT_REFERENCE
from regbench.design import calibrate, path
from regbench.design import study as rounds
from regbench.design.presets import CONTROL, PINNED_GRIDS, VERDICT_SEED_START

DEFAULT_PRESET = "path_mnist_small"
EXPERIMENT_SUFFIX = "verdict"  # the fresh seeds' experiment: <preset>-verdict
BASELINE = DEFAULT_REFERENCE  # the established regularizer a new one must also beat
REPORT = "verdict.md"


def answer(option: str, comparisons: list[rounds.Tracked], seeds: int) -> str:
    """The report's first sentence: per reference, OPTION's verdict on each metric with its
    difference and interval, and how the study stopped."""
    against: dict[str, list[str]] = {}
    for c in comparisons:
        final = c.final
        decision = final.decision if final.decided else stats.INCONCLUSIVE
        against.setdefault(c.reference, []).append(
            f"{decision} on {report.HEADERS[c.metric]} ({final.estimate:+.4f}, "
            f"{rounds.intervals(final)})")
    arm = comparisons[0].arm
    stopped = ("every comparison decided" if all(c.decided for c in comparisons)
               else f"the budget of {seeds} seeds per arm reached")
    parts = "; ".join(f"against {reference}: {', '.join(found)}"
                      for reference, found in against.items())
    return (f"**{option}** at the strength chosen on validation ({arm}), on fresh seeds: "
            f"{parts}; after {seeds} seeds per arm, {stopped}.")


# what a verdict cost, as cost_line writes it; the first figures are those of its first writing
COST = re.compile(r"^Wall time here: ([\d.]+) min for this command, (\d+) runs trained by it",
                  re.M)
REUSED = "(finished runs found in the store are reused, not retrained)"


def cost_line(minutes: float, trained: int, earlier: str | None, train_minutes: float,
              cores: int) -> str:
    """``Wall time here: M min for this command, N runs trained by it``, then their training
    (model.fit, summed over the runs) and the overhead ratio, wall x ``cores`` / training
    (1 when the cores did nothing but fit); when ``earlier`` (the report this one replaces)
    states a cost, that first cost is kept and this run's added."""
    training = (f"{REUSED}; their training {train_minutes:.1f} min summed over runs"
                + (f", overhead ratio {minutes * cores / train_minutes:.2f} (wall x {cores} "
                   "cores / training)" if train_minutes else ""))
    if found := COST.search(earlier or ""):
        return (f"Wall time here: {found[1]} min for this command, {found[2]} runs trained by "
                f"it, when this report was first written; its latest run: {minutes:.1f} min, "
                f"{trained} runs trained {training}.")
    return (f"Wall time here: {minutes:.1f} min for this command, {trained} runs trained by it "
            f"{training}.")


def markdown(option: str, experiment: str, header: str, sentence: str, study: path.PathStudy,
             shown: tuple[str, ...], comparisons: list[rounds.Tracked],
             schedule, margins: dict[str, float], minutes: float,
             trained: pd.DataFrame, cores: int, runs: pd.DataFrame, earlier: str | None = None,
             no_op: str | None = None) -> str:
    """verdict.md: the line saying how it was made, the answer, the margins, the configuration
    the runs share, what it cost (``cost_line`` of the runs in ``trained``, on ``cores``;
    keeping ``earlier``'s, the report it replaces), then calibration, path and comparison;
    ``no_op``: why the baseline was not compared (``path.no_op_reason``)."""
    calibrations = [c for c in study.calibrations if c.option in shown]
    pinned = [name for name in shown if name in PINNED_GRIDS.get(experiment, {})]
    points = {name: study.points[name] for name in (*shown, CONTROL)
              if name in study.points}
    selections = [s for s in study.selections if s.regularizer in shown]
    sequential_table = rounds.markdown(comparisons, schedule, VERDICT_SEED_START, "",
                                       True, runs, margins).lstrip("\n")
    written, _, shared = header.partition("\n\n")
    return "\n".join([
        written, "", sentence, "",
        *([f"Not compared with {BASELINE}: {no_op}, so its comparison would repeat the one "
           f"with {CONTROL}.", ""] if no_op else []),
        rounds.margins_line(margins), "", shared.rstrip("\n"), "",
        cost_line(minutes, len(trained), earlier,
                  trained[f"metrics.{record.TRAIN_SECONDS}"].sum() / 60, cores), "",
        "## Calibration", "",
        calibrate.markdown(calibrations) if calibrations else "",
        *([f"Pinned by the preset {experiment} (not calibrated): {', '.join(pinned)}.", ""]
          if pinned else []),
        "## Path (selection seeds, chosen on validation)", "",
        path.markdown(points, selections, study.planned, calibrations),
        "## Fresh seeds: the sequential comparison", "",
        sequential_table,
        "comparison.md beside this file is the fixed-sample analysis of the same runs.", ""])

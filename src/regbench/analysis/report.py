"""A Comparison as a report: Markdown (tables and a sentence per verdict), CSV and plots.

Pure output: the comparison and the runs' artifacts come in, files come out; nothing here reads
a store or changes its inputs, and the text does not depend on the order of the calls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from regbench import record
from regbench.analysis import query, stats
from regbench.analysis.comparison import SUMMARY_METRICS, TESTED, Comparison, by_seed
from regbench.analysis.query import RunArtifacts
from regbench.locations import ReportFiles

HEADERS = {
    record.TEST_ACCURACY: "test accuracy",
    record.TEST_DATA_LOSS: "test data loss",
    record.TEST_TOTAL_LOSS: "test total loss",
    "loss": "final train loss",
    "val_loss": "final val loss",
    record.TEST_ECE: "ECE",
    record.TEST_BRIER: "Brier",
    record.EPOCHS_TRAINED: "epochs",
}
REPORT_FILES = ("comparison.md", "comparison.csv", "per_seed.csv", "compared_run_ids.txt")
PER_SEED_COLUMNS = ("arm", "seed", "metric", "value", "run_id", "code_identity")
PLOT_FILES = ("learning_curves.png", "test_accuracy_per_seed.png", "reliability.png")
DIFFERENCE_FIELDS = ("paired", "identical", "left_out", "nan_dropped", "estimate", "low", "high",
                     "p_value", "p_permutation", "permutation_exact", "p_verdict", "p_adjusted",
                     "p_tost", "tost_low", "tost_high", "p_tost_adjusted", "margin",
                     "bootstrap_low", "bootstrap_high", "prob_improvement",
                     "prob_improvement_low", "prob_improvement_high", "seeds_needed", "family",
                     "verdict")


CONFIG_GROUPS = ("data", "model", "trainer")  # shown first, in this order; then the rest


def shared_config(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Every param all ``runs`` share with a value (the preset they ran, what the arms do not
    vary), by its first key part: ``{"data": ["limit=6000", ...], ...}``, CONFIG_GROUPS first;
    the seeds, unset and None keys, and MLflow's copy of the optimizer's settings left out."""
    shared: dict[str, list[str]] = {}
    for column in sorted(c for c in runs.columns if c.startswith("params.")):
        key = column.removeprefix("params.")
        values = runs[column]
        if (values.isna().any() or values.nunique() != 1 or values.iloc[0] == "None"
                or key in query.SEED_PARAMS or key.startswith(record.OPTIMIZER_PARAM_PREFIX)):
            continue
        group, _, rest = key.partition(".")
        shared.setdefault(group if rest else "", []).append(f"{rest or key}={values.iloc[0]}")
    order = [*CONFIG_GROUPS, *sorted(set(shared) - set(CONFIG_GROUPS))]
    return {group: shared[group] for group in order if group in shared}


def shared_config_markdown(runs: pd.DataFrame) -> str:
    """``shared_config`` as a collapsible table (one row per group), or "" when none."""
    groups = shared_config(runs)
    if not groups:
        return ""
    rows = [f"| {group or 'run'} | {'; '.join(settings)} |" for group, settings in groups.items()]
    return "\n".join(["<details><summary>Configuration every run shares</summary>", "",
                      "| group | settings |", "|---|---|", *rows, "", "</details>", "", ""])


def provenance(command: str, commit: str, runs: pd.DataFrame, notes: list[str] = ()) -> str:
    """A report's first paragraphs: the command that wrote it, the commit of the code that ran
    it, and the commits the runs it reads (``runs``, as ``query`` reads them) were trained
    at, with their number of runs; ``notes`` (what the reader must know first, as arms of mixed
    code, one line each); then the code identities of those runs (``code_lines``) and the
    configuration they all share."""
    column = f"tags.{record.TAG_GIT_COMMIT}"
    commits = runs[column] if column in runs else pd.Series("unknown", index=runs.index)
    counts = commits.fillna("unknown").value_counts().sort_index()
    trained = ", ".join(f"{commit_id} ({n})" for commit_id, n in counts.items())
    return (f"Written by `{command}` at commit {commit}, from {int(counts.sum())} runs trained "
            f"at commit {trained}.\n\n" + "".join(f"**Note**: {note}.\n\n" for note in notes)
            + "\n".join(code_lines(runs)) + "\n\n" + shared_config_markdown(runs))


def code_lines(runs: pd.DataFrame) -> list[str]:
    """Markdown lines naming the code identities of ``runs`` (regbench.run.identity): per
    identity its arms and runs, and its parts (training code, regularizer code and where it
    came from, versions); runs recorded without one are named by their commits."""
    from regbench.run.identity import UNRECORDED

    code = query.code_identities(runs)
    lines = ["Code that trained the runs (code identity: training code, regularizer code, "
             "versions; regbench.run.identity):", ""]
    for name in sorted(code.unique()):
        chosen = code == name
        arms = ", ".join(f"{arm} ({n})" for arm, n in
                         runs.loc[chosen, "arm"].value_counts(sort=False).items())
        if name == UNRECORDED:
            commits = query.tag_values(runs, record.TAG_GIT_COMMIT, "unknown")[chosen]
            commits = ", ".join(sorted(commits.str[:12].unique()))
            lines.append(f"- not recorded (runs from before code identities), arms {arms}: "
                         f"commits {commits}")
            continue
        first = runs.index[chosen][0]
        parts = {key: query.tag_values(runs, key, "unknown")[first] for key in record.CODE_TAGS}
        lines.append(f"- `{name}`, arms {arms}: training `{parts[record.TAG_CODE_TRAINING]}`, "
                     f"regularizer `{parts[record.TAG_CODE_REGULARIZER]}` "
                     f"({parts[record.TAG_REGULARIZER_SOURCE]}), "
                     f"{parts[record.TAG_CODE_VERSIONS]}")
    return lines


def _cell(mean: float, std: float, digits: int = 4) -> str:
    if np.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _p(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.3g}"


def interval_text(low: float, high: float) -> str:
    """An interval as every report prints it: [-0.0012, +0.0034], or – where there is none."""
    return "–" if np.isnan(low) else f"[{low:+.4f}, {high:+.4f}]"


def summary_table(comparison: Comparison) -> list[str]:
    header = ["arm", "runs", "seeds", *(HEADERS[m] for m in SUMMARY_METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in comparison.summary.iterrows():
        cells = [row["arm"], str(row["runs"]), row["seeds"]]
        for metric in SUMMARY_METRICS:
            digits = 1 if metric == record.EPOCHS_TRAINED else 4
            cells.append(_cell(row[f"{metric}_mean"], row[f"{metric}_std"], digits))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _pairing(d: stats.Difference) -> str:
    if d.verdict == stats.CANNOT_JUDGE:
        return "–"
    kind = "identical" if d.identical else "paired" if d.paired else "unpaired"
    dropped = [f"{d.left_out} seed(s) of one arm left out"] if d.left_out else []
    dropped += [f"{d.nan_dropped} NaN dropped"] if d.nan_dropped else []
    return f"{kind} ({', '.join(dropped)})" if dropped else kind


def _permutation(d: stats.Difference) -> str:
    return _p(d.p_permutation) + ("" if d.permutation_exact or np.isnan(d.p_permutation)
                                  else " (Monte Carlo)")


def differences_table(comparison: Comparison) -> list[str]:
    header = ["arm", "metric", "pairing", "n", "difference", "95% CI", "p t-test",
              "p permutation", "p Holm", "TOST p Holm (margin)", "P(improvement) [95% CI]",
              "BCa 95% CI (n>=10)", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm, diffs in comparison.differences.items():
        for d in diffs:
            improvement = ("–" if np.isnan(d.prob_improvement) else
                           f"{d.prob_improvement:.2f} [{d.prob_improvement_low:.2f}, "
                           f"{d.prob_improvement_high:.2f}]")
            cells = [arm, HEADERS[d.metric], _pairing(d), f"{d.n_arm}/{d.n_reference}",
                     f"{d.estimate:+.4f}", interval_text(d.low, d.high), _p(d.p_value),
                     _permutation(d), _p(d.p_adjusted),
                     f"{_p(d.p_tost_adjusted)} (±{d.margin:g})", improvement,
                     interval_text(d.bootstrap_low, d.bootstrap_high), d.verdict]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdict_sentence(d: stats.Difference) -> str:
    """One metric's verdict in words, with the interval it was read from."""
    name = HEADERS[d.metric]
    if d.verdict == stats.CANNOT_JUDGE:
        return (f"{name} cannot be judged (needs at least 2 runs per arm; difference "
                f"{d.estimate:+.4f})")
    if d.identical:
        return f"{name} identical on every seed (to float32 round-off)"
    numbers = f"{d.estimate:+.4f}, 95% CI {interval_text(d.low, d.high)}, p Holm {_p(d.p_adjusted)}"
    if d.verdict == stats.EQUIVALENT:
        return (f"{name} equivalent within ±{d.margin:g} ({d.estimate:+.4f}, 90% CI "
                f"{interval_text(d.tost_low, d.tost_high)} inside the margin, TOST p Holm "
                f"{_p(d.p_tost_adjusted)})")
    if d.verdict == stats.INCONCLUSIVE:
        alpha = (1 - stats.CONFIDENCE) / d.family
        needed = (f"about {d.seeds_needed} seeds per arm would detect a difference of "
                  f"±{d.margin:g} with 80% power at alpha {alpha:.3g} (0.05 over the "
                  f"{d.family} tests)" if d.seeds_needed else
                  "no seed count in reach would settle it at this spread")
        return f"{name} inconclusive ({numbers}): {needed}"
    return f"{name} {d.verdict} ({numbers})"


def verdict_lines(comparison: Comparison) -> list[str]:
    """One line per arm against the reference, then one per pair of identical arms."""
    lines = [f"{arm} vs {comparison.reference}: " + "; ".join(map(verdict_sentence, diffs))
             for arm, diffs in comparison.differences.items()]
    for pair in comparison.identical:
        if pair.largest == 0:
            lines.append(f"{pair.arm} is identical to {pair.other} on all {pair.seeds} seeds: "
                         "at this strength the regularizer had no effect")
        else:
            lines.append(f"{pair.arm} agrees with {pair.other} to within {pair.largest:.1g} on "
                         f"all {pair.seeds} seeds (float32 round-off): at this strength the "
                         "regularizer had no measurable effect")
    return lines


def targets_table(comparison: Comparison) -> list[str]:
    """Per arm and target: the mean final value and the runs that meet it."""
    if not comparison.targets:
        return []
    lines = ["Targets (each run's final value):", "", "| arm | target | mean | runs meeting it |",
             "|---|---|---|---|"]
    lines += [f"| {t.arm} | {t.target} | {'–' if np.isnan(t.mean) else f'{t.mean:.4f}'} | "
              f"{t.met} of {t.runs} |" for t in comparison.targets]
    return [*lines, ""]


def markdown(comparison: Comparison, artifacts: RunArtifacts | None = None,
             header: str = "") -> str:
    """The whole report as Markdown, after ``header``; ``artifacts`` adds its warnings."""
    tests = sum(d.tested for diffs in comparison.differences.values() for d in diffs)
    lines = [*([header] if header else []), *summary_table(comparison), "",
             f"Differences against the reference arm **{comparison.reference}** (a "
             "fixed-sample analysis of the runs there are: arm minus reference over the seeds "
             "both arms have, with the t-interval of the differences, the paired t-test and the "
             f"sign-flip permutation p (up to {stats.PERMUTATION_UP_TO} seeds); with fewer "
             "than 2 shared seeds, Welch's test and interval and a permutation of the arm "
             "labels. p Holm: the larger of the t-test's and the permutation test's p, "
             f"adjusted over the {tests} tests of this report. "
             "Equivalence: TOST within ±margin, the 90% CI inside it):", "",
             *differences_table(comparison), ""]
    lines += [f"- {line}" for line in verdict_lines(comparison)]
    lines += ["", *targets_table(comparison)] if comparison.targets else []
    warnings = [*comparison.warnings, *(artifacts.warnings if artifacts else [])]
    lines += [f"- warning: {w}" for w in warnings]
    return "\n".join(lines) + "\n"


def csv_frame(comparison: Comparison) -> pd.DataFrame:
    """The summary, one row per arm, with each TESTED metric's difference fields as columns."""
    frame = comparison.summary.copy()
    for index, metric in enumerate(TESTED):
        for field in DIFFERENCE_FIELDS:
            frame[f"diff_{metric}_{field}"] = [
                getattr(comparison.differences[arm][index], field)
                if arm in comparison.differences else None for arm in frame["arm"]]
    return frame


def write_plots(comparison: Comparison, artifacts: RunArtifacts,
                stage: Callable[[str], Path]) -> None:
    """Learning curves (mean over seeds, min-max band), test accuracy per seed, and the arms'
    pooled reliability diagrams (of the runs that have bins), each to ``stage(file name)``."""
    from regbench.run.metrics import ReliabilityBins
    from regbench.run.plots import plot_learning_curves, plot_per_seed, plot_reliability

    curves, bins, per_seed = {}, {}, {}
    for arm in comparison.summary["arm"]:
        group = comparison.runs[comparison.runs["arm"] == arm]
        curves[arm] = artifacts.curves[arm]
        parts = [artifacts.reliability[r] for r in group["run_id"]
                 if artifacts.reliability[r] is not None]
        if parts:
            bins[arm] = ReliabilityBins.pooled(parts)
        per_seed[arm] = by_seed(group, record.TEST_ACCURACY)
    learning, per_seed_file, reliability = PLOT_FILES
    plot_learning_curves(curves, stage(learning))
    plot_per_seed(per_seed, record.TEST_ACCURACY, stage(per_seed_file))
    if bins:
        plot_reliability(bins, stage(reliability))


def per_seed_frame(comparison: Comparison) -> pd.DataFrame:
    """The values behind every verdict of the comparison, one row per run and TESTED metric:
    arm, seed, metric, value, run_id, code_identity (``query.code_identities``)."""
    runs = comparison.runs.assign(code_identity=query.code_identities(comparison.runs))
    rows = [runs.assign(metric=metric, value=runs[f"metrics.{metric}"])[list(PER_SEED_COLUMNS)]
            for metric in TESTED if f"metrics.{metric}" in runs]
    return pd.concat(rows, ignore_index=True).sort_values(["metric", "arm", "seed"])


def write_report(comparison: Comparison, artifacts: RunArtifacts, folder: Path,
                 header: str = "") -> list[Path]:
    """comparison.md (starting with ``header``), comparison.csv, per_seed.csv,
    compared_run_ids.txt and the plots in ``folder``, written whole or not at all
    (``locations.ReportFiles``); their paths."""
    text, table, per_seed, ids = REPORT_FILES
    with ReportFiles(folder, REPORT_FILES + PLOT_FILES) as stage:
        stage(text).write_text(markdown(comparison, artifacts, header))
        csv_frame(comparison).to_csv(stage(table), index=False)
        per_seed_frame(comparison).to_csv(stage(per_seed), index=False)
        stage(ids).write_text("\n".join(comparison.runs["run_id"]) + "\n")
        write_plots(comparison, artifacts, stage)
    return stage.written

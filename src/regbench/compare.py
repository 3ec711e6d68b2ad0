"""``python -m regbench.compare``: the recorded runs as a comparison of arms, with statistics.

Runs are the FINISHED runs of one experiment (optionally narrowed by an MLflow filter string);
an arm is a regularizer name with its strengths (``l2-0.0001``); each run is one seed of its arm.
The report (Markdown table, CSV, plots) goes to ``reports/`` and is logged as the artifacts of a
run in the experiment ``regbench-comparisons``, tagged with the ids of the runs it compared.
See ``regbench.stats`` for the differences, intervals and verdicts against the reference arm.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from regbench.config import STRENGTH_KEYS, arm_label
from regbench.paths import REPORTS_DIR
from regbench.stats import Difference, compare

COMPARISONS_EXPERIMENT = "regbench-comparisons"
COLUMNS = (  # metric, header
    ("test_accuracy", "test accuracy"),
    ("test_data_loss", "test data loss"),
    ("test_total_loss", "test total loss"),
    ("loss", "final train loss"),
    ("val_loss", "final val loss"),
    ("test_ece", "ECE"),
    ("test_brier", "Brier"),
    ("epochs_trained", "epochs"),
)
TESTED = (("test_accuracy", True), ("test_data_loss", False))  # metric, higher is better
CURVE_METRICS = ("loss", "val_loss", "data_loss", "val_data_loss", "accuracy", "val_accuracy")
MAX_TAG_LENGTH = 8000
FETCH_THREADS = 8
BULK_CHUNK = 500


class CompareError(RuntimeError):
    """Nothing to compare, or not what was asked for; the message says what to do."""


@dataclass
class Comparison:
    runs: pd.DataFrame          # one row per run: run_id, arm, seed, metrics.*
    summary: pd.DataFrame       # one row per arm
    differences: dict[str, list[Difference]]  # arm -> one Difference per TESTED metric
    reference: str
    warnings: list[str]


def fetch_runs(experiment: str, filter_string: str | None) -> pd.DataFrame:
    """FINISHED runs of ``experiment`` matching ``filter_string``, with ``arm`` and ``seed``."""
    import mlflow

    if mlflow.get_experiment_by_name(experiment) is None:
        raise CompareError(f"no experiment '{experiment}' in {mlflow.get_tracking_uri()}; "
                           "record runs with 'make train' first")
    condition = "attributes.status = 'FINISHED'"
    query = f"{condition} and {filter_string}" if filter_string else condition
    try:
        runs = mlflow.search_runs(experiment_names=[experiment], filter_string=query,
                                  max_results=100_000)
    except mlflow.exceptions.MlflowException as error:
        raise CompareError(f"--filter {filter_string!r}: {error.message}") from None
    if runs.empty:
        where = f" matching {filter_string!r}" if filter_string else ""
        raise CompareError(f"no FINISHED runs in experiment '{experiment}'{where}; "
                           "record runs with 'make train' or widen --filter")
    if "tags.sweep" in runs:  # a sweep's parent run summarises its children; it is not one
        runs = runs[runs["tags.sweep"] != "parent"].copy()
    if "params.regularizer.name" not in runs or runs["params.regularizer.name"].isna().all():
        raise CompareError(f"the runs of '{experiment}' have no param regularizer.name: "
                           "they were not recorded by regbench.train")
    foreign = runs[runs["params.regularizer.name"].isna()]
    runs = runs[runs["params.regularizer.name"].notna()].copy()
    runs.attrs["foreign"] = list(foreign["run_id"])
    strength_columns = {key: f"params.regularizer.{key}" for key in STRENGTH_KEYS}
    runs["arm"] = [  # a param a run does not have reads as NaN
        arm_label({"name": row["params.regularizer.name"],
                   **{key: row[column] for key, column in strength_columns.items()
                      if column in row and isinstance(row[column], str)}})
        for _, row in runs.iterrows()
    ]
    runs["seed"] = pd.to_numeric(runs.get("params.seed"), errors="coerce")
    return runs


def _by_seed(group: pd.DataFrame, metric: str) -> dict:
    """seed -> value for one arm (keyed by run id instead when a seed repeats)."""
    values = group.dropna(subset=[f"metrics.{metric}"])
    keys = values["seed"] if values["seed"].is_unique else values["run_id"]
    return dict(zip(keys, values[f"metrics.{metric}"], strict=True))


def summarise(runs: pd.DataFrame, reference: str | None) -> Comparison:
    """The arms' means and standard deviations, and each arm's differences to ``reference``
    (an arm such as ``l2-0.0001``, or a regularizer name with exactly one arm)."""
    arms = sorted(runs["arm"].unique())
    foreign = runs.attrs.get("foreign", [])
    warnings = [f"{len(foreign)} run(s) without the param regularizer.name are left out: "
                f"{', '.join(r[:8] for r in foreign)}"] if foreign else []
    for metric, _ in COLUMNS:
        column = f"metrics.{metric}"
        if column not in runs:
            runs[column] = np.nan
        missing = runs[runs[column].isna()]
        if len(missing):
            warnings.append(f"{len(missing)} run(s) lack {metric} and are left out of that "
                            f"column: {', '.join(missing['run_id'].str[:8])}")
    reference_arm = _resolve_reference(reference, arms)
    rows = []
    for arm in [reference_arm, *[a for a in arms if a != reference_arm]]:
        group = runs[runs["arm"] == arm]
        row = {"arm": arm, "runs": len(group),
               "seeds": " ".join(str(int(s)) for s in sorted(group["seed"].dropna()))}
        for metric, _ in COLUMNS:
            values = group[f"metrics.{metric}"].dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        rows.append(row)
    summary = pd.DataFrame(rows)
    differences = {}
    ref_group = runs[runs["arm"] == reference_arm]
    for arm in summary["arm"][1:]:
        group = runs[runs["arm"] == arm]
        differences[arm] = [compare(metric, _by_seed(group, metric),
                                    _by_seed(ref_group, metric), higher)
                            for metric, higher in TESTED]
    return Comparison(runs, summary, differences, reference_arm, warnings)


def _resolve_reference(reference: str | None, arms: list[str]) -> str:
    if reference is None:
        return arms[0]
    if reference in arms:
        return reference
    named = [arm for arm in arms if arm.split("-")[0] == reference]
    if len(named) == 1:
        return named[0]
    raise CompareError(f"reference arm '{reference}' is not one of the arms ({', '.join(arms)}); "
                       "choose one with --reference")


def _cell(mean: float, std: float, digits: int = 4) -> str:
    if np.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _difference_cell(d: Difference) -> str:
    if np.isnan(d.low):
        return f"{d.estimate:+.4f}"
    pairing = "paired" if d.paired else "unpaired"
    return f"{d.estimate:+.4f} [{d.low:+.4f}, {d.high:+.4f}] p={d.p_value:.3g} ({pairing})"


def verdict_lines(comparison: Comparison) -> list[str]:
    """One line per arm: its verdict on test accuracy and on test data loss."""
    lines = []
    for arm, diffs in comparison.differences.items():
        parts = [f"{d.metric.replace('_', ' ')} {d.verdict} ({_difference_cell(d)})"
                 for d in diffs]
        lines.append(f"{arm} vs {comparison.reference}: " + "; ".join(parts))
    return lines


def markdown(comparison: Comparison) -> str:
    header = ["arm", "runs", "seeds", *(title for _, title in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in comparison.summary.iterrows():
        cells = [row["arm"], str(row["runs"]), row["seeds"]]
        for metric, _ in COLUMNS:
            digits = 1 if metric == "epochs_trained" else 4
            cells.append(_cell(row[f"{metric}_mean"], row[f"{metric}_std"], digits))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Differences against the reference arm **{comparison.reference}** "
              "(arm minus reference, 95% bootstrap CI over seeds, Welch t-test p):", ""]
    lines += [f"- {line}" for line in verdict_lines(comparison)]
    lines += [f"- warning: {w}" for w in comparison.warnings]
    return "\n".join(lines) + "\n"


def csv_frame(comparison: Comparison) -> pd.DataFrame:
    frame = comparison.summary.copy()
    for metric, _ in TESTED:
        for field in ("estimate", "low", "high", "p_value", "verdict"):
            frame[f"diff_{metric}_{field}"] = [
                next((getattr(d, field) for d in comparison.differences.get(arm, [])
                      if d.metric == metric), None)
                for arm in frame["arm"]]
    return frame


def _reliability(artifact_uri: str):
    """The reliability bins in ``<artifact_uri>/reliability.json``, or None. Read through the
    artifact URI that search_runs gave, not ``runs:/``, which costs a run lookup per read."""
    import mlflow

    from regbench.metrics import ReliabilityBins

    try:
        return ReliabilityBins.from_dict(
            mlflow.artifacts.load_dict(f"{artifact_uri}/reliability.json"))
    except Exception:
        return None


def _curves_one_run(run_id: str) -> dict[str, list[float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    curves = {}
    for metric in CURVE_METRICS:
        points = sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)
        if points:
            curves[metric] = [m.value for m in points]
    return curves


def metric_curves(run_ids: list[str], pool) -> dict[str, dict[str, list[float]]]:
    """run id -> {metric: values by step} for CURVE_METRICS.

    On a SQL store, one query per metric for all runs (the bulk read MLflow's own UI uses);
    elsewhere (a tracking server), one request per run and metric, spread over ``pool``.
    """
    from mlflow.tracking import MlflowClient

    store = MlflowClient()._tracking_client.store
    if not hasattr(store, "get_metric_history_bulk"):
        return dict(zip(run_ids, pool.map(_curves_one_run, run_ids), strict=True))
    points: dict[str, dict[str, list]] = {run_id: {} for run_id in run_ids}
    for start in range(0, len(run_ids), BULK_CHUNK):
        chunk = run_ids[start:start + BULK_CHUNK]
        for metric in CURVE_METRICS:
            for row in store.get_metric_history_bulk(chunk, metric, max_results=10**9):
                points[row.run_id].setdefault(metric, []).append(
                    (row.step, row.value))
    return {run_id: {metric: [value for _, value in sorted(pairs)]
                     for metric, pairs in curves.items()}
            for run_id, curves in points.items()}


def write_plots(comparison: Comparison, folder: Path) -> list[Path]:
    """Learning curves (mean over seeds, min-max band), test accuracy per seed, and the arms'
    pooled reliability diagrams (from each run's reliability.json, where it has one). The runs'
    artifacts are read by a pool of threads: the store's latency, not its work, is what one
    run at a time would wait for."""
    from concurrent.futures import ThreadPoolExecutor

    from regbench.metrics import ReliabilityBins
    from regbench.plots import pad_runs, plot_learning_curves, plot_per_seed, plot_reliability

    run_ids = list(comparison.runs["run_id"])
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        reliability = dict(zip(run_ids, pool.map(_reliability, comparison.runs["artifact_uri"]),
                               strict=True))
        curves_by_run = metric_curves(run_ids, pool)
    without_bins = [run_id[:8] for run_id, bins in reliability.items() if bins is None]
    if without_bins:
        comparison.warnings.append(f"{len(without_bins)} run(s) have no reliability.json and "
                                   f"are left out of the reliability diagram: "
                                   f"{', '.join(without_bins[:10])}"
                                   f"{' ...' if len(without_bins) > 10 else ''}")
    curves, bins, per_seed = {}, {}, {}
    for arm in comparison.summary["arm"]:
        group = comparison.runs[comparison.runs["arm"] == arm]
        arm_curves = [curves_by_run[run_id] for run_id in group["run_id"]]
        curves[arm] = {metric: pad_runs(series) for metric in CURVE_METRICS
                       if (series := [c[metric] for c in arm_curves if metric in c])}
        parts = [reliability[r] for r in group["run_id"] if reliability[r] is not None]
        if parts:
            bins[arm] = ReliabilityBins.pooled(parts)
        per_seed[arm] = _by_seed(group, "test_accuracy")
    paths = [plot_learning_curves(curves, folder / "learning_curves.png"),
             plot_per_seed(per_seed, "test_accuracy", folder / "test_accuracy_per_seed.png")]
    if bins:
        paths.append(plot_reliability(bins, folder / "reliability.png"))
    return paths


def write_report(comparison: Comparison, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = write_plots(comparison, folder)
    (folder / "comparison.md").write_text(markdown(comparison))
    csv_frame(comparison).to_csv(folder / "comparison.csv", index=False)
    (folder / "compared_run_ids.txt").write_text("\n".join(comparison.runs["run_id"]) + "\n")
    names = ("comparison.md", "comparison.csv", "compared_run_ids.txt")
    return [*(folder / name for name in names), *paths]


def log_comparison(comparison: Comparison, paths: list[Path], tracking_uri: str | None,
                   experiment: str, filter_string: str | None) -> str:
    """Log the report files as a run of COMPARISONS_EXPERIMENT; return its run id."""
    import mlflow

    from regbench.tracking import use_store

    experiment_id = use_store(tracking_uri, COMPARISONS_EXPERIMENT)
    ids = ",".join(comparison.runs["run_id"])
    tags = {"compared_experiment": experiment, "reference_arm": comparison.reference,
            "filter": filter_string or "", "compared_runs": str(len(comparison.runs)),
            "compared_run_ids": ids if len(ids) <= MAX_TAG_LENGTH else
            "too many for a tag: see compared_run_ids.txt"}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"compare-{experiment}",
                          tags=tags) as run:
        for path in paths:
            mlflow.log_artifact(str(path))
    return run.info.run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="regbench", help="experiment to compare")
    parser.add_argument("--filter", default=None,
                        help="MLflow filter string, e.g. \"params.model.name = 'mlp_bn'\"")
    parser.add_argument("--reference", default="l2",
                        help="reference arm (e.g. l2 or l2-0.0001); default l2")
    parser.add_argument("--tracking-uri", default=None,
                        help="default: $MLFLOW_TRACKING_URI, else the project's SQLite store")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR, help="report folder")
    parser.add_argument("--no-log", action="store_true", help="do not log a comparison run")
    args = parser.parse_args(argv)

    import mlflow

    from regbench.paths import default_tracking_uri

    mlflow.set_tracking_uri(args.tracking_uri or default_tracking_uri())
    try:
        comparison = summarise(fetch_runs(args.experiment, args.filter), args.reference)
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    paths = write_report(comparison, args.out)
    if not args.no_log:
        run_id = log_comparison(comparison, paths, args.tracking_uri, args.experiment, args.filter)
        print(f"logged as run {run_id} in experiment '{COMPARISONS_EXPERIMENT}'")
    print(markdown(comparison), end="")
    print(f"report: {args.out}/ ({', '.join(p.name for p in paths)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

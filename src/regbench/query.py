"""Reading recorded runs from a tracking store: the runs of an experiment as a table, and what
a report needs besides (per-epoch curves, reliability bins). No statistics, no output.

The names read are the contract's (``regbench.record``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from regbench import record

FETCH_THREADS = 8
BULK_CHUNK = 500


class CompareError(RuntimeError):
    """Nothing to compare, or not what was asked for; the message says what to do."""


@dataclass(frozen=True)
class RecordedRuns:
    """The FINISHED regbench runs of one experiment, and the ids of the runs left out because
    they have no ``arm`` tag (not recorded by regbench.train)."""

    runs: pd.DataFrame  # one row per run: run_id, artifact_uri, arm, seed, metrics.*, params.*
    left_out: list[str] = field(default_factory=list)


def fetch_runs(experiment: str, filter_string: str | None) -> RecordedRuns:
    """FINISHED runs of ``experiment`` matching ``filter_string``, with columns ``arm`` and
    ``seed`` added; sweep parent runs are left out. Raises CompareError when there is nothing."""
    import mlflow

    if mlflow.get_experiment_by_name(experiment) is None:
        raise CompareError(f"no experiment '{experiment}' in {mlflow.get_tracking_uri()}; "
                           "record runs with 'make train' first")
    condition = f"attributes.status = '{record.FINISHED}'"
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
    sweep_column = f"tags.{record.TAG_SWEEP}"
    if sweep_column in runs:  # a sweep's parent run summarises its children; it is not one
        runs = runs[runs[sweep_column] != record.SWEEP_PARENT]
    arm_column = f"tags.{record.TAG_ARM}"
    if arm_column not in runs or runs[arm_column].isna().all():
        raise CompareError(f"the runs of '{experiment}' have no tag {record.TAG_ARM}: they were "
                           "not recorded by regbench.train")
    left_out = list(runs.loc[runs[arm_column].isna(), "run_id"])
    ours = runs[runs[arm_column].notna()]
    ours = ours.assign(arm=ours[arm_column],
                       seed=pd.to_numeric(ours.get(f"params.{record.PARAM_SEED}"),
                                          errors="coerce"))
    return RecordedRuns(ours.reset_index(drop=True), left_out)


@dataclass(frozen=True)
class RunArtifacts:
    """What a report draws besides the table: per run, its curves (metric -> values by epoch)
    and its test reliability bins (None where the run has no reliability.json)."""

    curves: dict[str, dict[str, list[float]]]
    reliability: dict[str, object]

    @property
    def warnings(self) -> list[str]:
        missing = [run_id[:8] for run_id, bins in self.reliability.items() if bins is None]
        if not missing:
            return []
        more = " ..." if len(missing) > 10 else ""
        return [f"{len(missing)} run(s) have no {record.RELIABILITY_ARTIFACT} and are left out "
                f"of the reliability diagram: {', '.join(missing[:10])}{more}"]


def _reliability(artifact_uri: str):
    """The reliability bins in ``<artifact_uri>/reliability.json``, or None. Read through the
    artifact URI that search_runs gave, not ``runs:/``, which costs a run lookup per read."""
    import mlflow

    from regbench.metrics import ReliabilityBins

    try:
        return ReliabilityBins.from_dict(
            mlflow.artifacts.load_dict(f"{artifact_uri}/{record.RELIABILITY_ARTIFACT}"))
    except Exception:
        return None


def _curves_one_run(run_id: str) -> dict[str, list[float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    curves = {}
    for metric in record.CURVE_METRICS:
        points = sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)
        if points:
            curves[metric] = [m.value for m in points]
    return curves


def _bulk_history_store():
    """The client's tracking store if it reads many runs' history in one query, else None.

    MLflow's public client reads one run's history per call; its SQL store (SQLite,
    PostgreSQL) also has ``get_metric_history_bulk``, the query behind the UI's chart of many
    runs, which the public client does not expose. Reached through the client's private
    ``_tracking_client.store`` (pinned by tests/test_compare.py: both reads give the same
    curves); a tracking server has no such method and is read run by run.
    """
    from mlflow.tracking import MlflowClient

    store = getattr(getattr(MlflowClient(), "_tracking_client", None), "store", None)
    return store if hasattr(store, "get_metric_history_bulk") else None


def metric_curves(run_ids: list[str], bulk: bool = True) -> dict[str, dict[str, list[float]]]:
    """run id -> {metric: values by step} for the contract's CURVE_METRICS: one query per
    metric for all runs on a SQL store (``bulk``), else one request per run and metric, spread
    over a pool of threads (the store's latency, not its work, is what they wait for)."""
    store = _bulk_history_store() if bulk else None
    if store is None:
        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            return dict(zip(run_ids, pool.map(_curves_one_run, run_ids), strict=True))
    points: dict[str, dict[str, list]] = {run_id: {} for run_id in run_ids}
    for start in range(0, len(run_ids), BULK_CHUNK):
        chunk = run_ids[start:start + BULK_CHUNK]
        for metric in record.CURVE_METRICS:
            for row in store.get_metric_history_bulk(chunk, metric, max_results=10**9):
                points[row.run_id].setdefault(metric, []).append((row.step, row.value))
    return {run_id: {metric: [value for _, value in sorted(pairs)]
                     for metric, pairs in curves.items()}
            for run_id, curves in points.items()}


def read_artifacts(runs: pd.DataFrame) -> RunArtifacts:
    """The curves and reliability bins of every run in ``runs`` (columns run_id,
    artifact_uri)."""
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        reliability = dict(zip(runs["run_id"], pool.map(_reliability, runs["artifact_uri"]),
                               strict=True))
    return RunArtifacts(metric_curves(list(runs["run_id"])), reliability)

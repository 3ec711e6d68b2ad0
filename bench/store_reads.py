"""Figure 4 of ``make bench``: what tracking costs a run, and reading a large store
(``make compare`` and the path report on 1,000 and 10,000 runs, curve bands by SQL or run by
run)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from processes import seconds_and_peak_mib


def tracking_seconds_per_epoch(store: Path, epochs: int) -> list[float]:
    """Wall time of the MLflow callback's on_epoch_end, logging a real epoch's metrics."""
    import mlflow

    from regbench import record
    from regbench.run.callbacks import EpochMetricsCallback
    from regbench.run.store import use_store

    experiment_id = use_store(f"sqlite:///{store / 'tracking.db'}", "tracking")
    logs = {name: 0.5 for name in record.EPOCH_METRICS}
    callback = EpochMetricsCallback()
    seconds = []
    with mlflow.start_run(experiment_id=experiment_id):
        for epoch in range(epochs):
            started = time.perf_counter()
            callback.on_epoch_end(epoch, dict(logs))
            seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        mlflow.flush_async_logging()
        flush = time.perf_counter() - started
    return [s + flush / epochs for s in seconds]


def fill_store(store: Path, runs: int, epochs: int, plain_paths: bool = False) -> str:
    """A store with ``runs`` FINISHED runs in three arms, each with per-epoch curves, params,
    tags, final metrics and the reliability artifact as regbench train records them; the runs'
    artifact URIs are ``file://`` URIs, or with ``plain_paths`` plain paths (as MLflow's client
    records them in a store made with a path for its artifact root).

    The experiment is created through MLflow; the rows are inserted into the SQL store's run,
    param, tag, metric and latest-metric tables in one transaction, because logging through the
    client (three transactions a run) took 146 s per 1,000 runs here (4.7 s this way). Compare reads
    the result through MLflow's client, so a row it could not read would fail the benchmark."""
    import uuid

    import mlflow
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.tracking import MlflowClient

    from regbench import record
    from regbench.run import identity
    from regbench.run.metrics import reliability_bins

    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    root = str(store / "art") if plain_paths else (store / "art").as_uri()
    experiment_id = client.create_experiment("regbench", artifact_location=root)
    rng = np.random.default_rng(0)
    arms = [("l2", [1e-4]), ("custom", [1e-4]), ("none", [])]
    codes = {name: identity.of_option(name).tags() for name, _ in arms}  # as training records
    now = int(time.time() * 1000)
    rows = {table: [] for table in (SqlRun, SqlParam, SqlTag, SqlMetric, SqlLatestMetric)}
    for index in range(runs):
        name, strengths = arms[index % 3]
        run_id = uuid.uuid4().hex
        rows[SqlRun].append(dict(
            run_uuid=run_id, name=f"{name}-{index}", source_type="LOCAL", status="FINISHED",
            start_time=now + index, end_time=now + index + 1, lifecycle_stage="active",
            artifact_uri=f"{root}/{run_id}/artifacts",
            experiment_id=int(experiment_id)))
        artifacts = store / "art" / run_id / "artifacts"
        artifacts.mkdir(parents=True)
        bins = reliability_bins(rng.dirichlet(np.ones(10), size=100), rng.integers(0, 10, 100))
        (artifacts / record.RELIABILITY_ARTIFACT).write_text(json.dumps(bins.to_dict()))
        params = {record.PARAM_REGULARIZER: name, record.PARAM_SEED: str(index // 3)}
        if strengths:
            params["regularizer.weight"] = str(strengths[0])
        rows[SqlParam] += [dict(run_uuid=run_id, key=k, value=v) for k, v in params.items()]
        tags = {record.TAG_REGULARIZER: name, record.TAG_ARM: record.arm_label(name, strengths),
                **codes[name]}
        rows[SqlTag] += [dict(run_uuid=run_id, key=k, value=v) for k, v in tags.items()]
        points = [(key, step, float(rng.uniform())) for step in range(epochs)
                  for key in record.CURVE_METRICS]
        points += [(key, 0, float(rng.uniform())) for key in record.FINAL_METRICS]
        latest = {key: (step, value) for key, step, value in points}
        rows[SqlMetric] += [dict(run_uuid=run_id, key=key, step=step, value=value,
                                 timestamp=now, is_nan=False) for key, step, value in points]
        rows[SqlLatestMetric] += [dict(run_uuid=run_id, key=key, step=step, value=value,
                                       timestamp=now, is_nan=False)
                                  for key, (step, value) in latest.items()]
    engine = sqlalchemy.create_engine(uri)
    with engine.begin() as connection:
        for table, values in rows.items():
            connection.execute(sqlalchemy.insert(table.__table__), values)
    engine.dispose()
    return uri


# ``regbench compare`` with its collector pause and final-collection skip turned off
PLAIN_COMPARE = ("import contextlib, sys; from regbench.cli import common; "
                 "common.collector_paused = contextlib.nullcontext; "
                 "common.exit_skipping_final_collection = sys.exit; "
                 "from regbench.cli import main; sys.argv[1:1] = ['compare']; main.main()")


def commands_seconds(commands: dict[str, list[str]],
                     repeats: int) -> dict[str, tuple[list[float], float]]:
    """name -> (wall seconds of each of ``repeats`` runs, the largest peak memory in MiB) of
    each command, the commands alternated."""
    measured = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            measured[name].append(seconds_and_peak_mib(command))
    return {name: ([seconds for seconds, _ in runs], max(peak for _, peak in runs))
            for name, runs in measured.items()}


def curve_read_seconds(uri: str, repeats: int) -> dict[str, list[float]]:
    """Seconds to read the curve bands of every arm of the store at ``uri``, alternately as
    the database's aggregates (``sql``) and run by run through MLflow's client (``client``,
    the read a tracking server gets)."""
    import mlflow

    from regbench.analysis import query

    mlflow.set_tracking_uri(uri)
    by_arm = query.runs_by_arm(query.fetch_runs("regbench", None).runs)
    seconds = {"sql": [], "client": []}
    for _ in range(repeats):
        for name, bulk in (("sql", True), ("client", False)):
            started = time.perf_counter()
            query.curve_bands(by_arm, bulk=bulk)
            seconds[name].append(time.perf_counter() - started)
    return seconds

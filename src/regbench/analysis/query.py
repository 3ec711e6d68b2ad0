"""Reading recorded runs from a tracking store: the runs of an experiment as a table, and what
a report needs besides (per-epoch curves, reliability bins). No statistics, no output.

The names read are the contract's (``regbench.record``).
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from regbench import record
from regbench.errors import CompareError

FETCH_THREADS = 8
PROGRESS_DELAY = 2.0  # seconds a read may take before its progress bar appears
BULK_CHUNK = 500


# params that differ between the seeds of one arm: the seed itself, the split seed that
# follows it, what does not change a result, and MLflow's copy of the optimizer's settings
SEED_PARAMS = (record.PARAM_SEED, "data.split_seed")


def _arm_neutral(param: str, neutral: set[str]) -> bool:
    return (param in SEED_PARAMS or param in neutral
            or param.startswith(record.OPTIMIZER_PARAM_PREFIX))


@dataclass(frozen=True)
class RecordedRuns:
    """The FINISHED regbench runs of one experiment, one per arm and seed; the ids of the runs
    left out because they have no ``arm`` tag (not recorded by regbench train); and what was
    done to make each arm one configuration of possible values (``notes``, one line each)."""

    runs: pd.DataFrame  # one row per run: run_id, artifact_uri, arm, seed, metrics.*, params.*
    left_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def split_mixed_arms(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Make each arm one configuration apart from the seed. Runs of one arm label whose
    params differ in anything but SEED_PARAMS and result-neutral keys become arms of their
    own, named by what differs: ``l2-0.0001 (trainer.optimizer=adam)``. Return the relabelled
    runs and one note per label split."""
    params = [c for c in runs.columns if c.startswith("params.")]
    notes = []
    arm = runs["arm"].copy()
    for label, group in runs.groupby("arm", sort=False):
        first = {c.removeprefix("params."): group[c].iloc[0] for c in params}
        neutral = record.result_neutral_keys(first)
        settings = group[[c for c in params if not _arm_neutral(
            c.removeprefix("params."), neutral)]].fillna("unset")
        differing = [c for c in settings.columns if settings[c].nunique() > 1]
        if not differing:
            continue
        named = settings[differing].apply(
            lambda row: ", ".join(f"{c.removeprefix('params.')}={v}" for c, v in row.items()),
            axis=1)
        arm[group.index] = label + " (" + named + ")"
        keys = ", ".join(c.removeprefix("params.") for c in differing)
        notes.append(f"arm {label} holds runs of {named.nunique()} configs that differ in "
                     f"{keys}: each is an arm of its own")
    return runs.assign(arm=arm), notes


def newest_per_seed(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One run per arm and seed: the newest FINISHED one (by start time), so that a seed
    trained twice keeps its arm paired by seed. Return the runs kept and a note naming the
    older runs left out, if any."""
    ordered = runs.sort_values("start_time", ascending=False, kind="stable")
    repeated = ordered.duplicated(subset=["arm", "seed"]) & ordered["seed"].notna()
    older = ordered.loc[repeated, "run_id"]
    notes = [f"{len(older)} run(s) repeat a seed of their arm; the newest run of each seed is "
             f"compared, the older left out: {', '.join(older.str[:8])}"] if len(older) else []
    kept = ordered[~repeated].sort_index()
    return kept, notes


def possible_values(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The runs whose final test metrics are all possible (``record.METRIC_RANGES``: in
    range and finite, or NaN; MLflow's stand-in for an infinity counts as one), and a note
    naming each other run with its impossible values: such a run (an edited store, a broken
    evaluation) is left out of every mean and test."""
    impossible = pd.Series(False, index=runs.index)
    found: dict[str, list[str]] = {}
    for metric, (low, high) in record.METRIC_RANGES.items():
        column = f"metrics.{metric}"
        if column not in runs:
            continue
        values = pd.to_numeric(runs[column], errors="coerce")
        # MLflow stores +-inf as +-the largest float: read it back as what was logged
        values = values.mask(values.abs() >= np.finfo(float).max, np.sign(values) * np.inf)
        bad = values.notna() & (~np.isfinite(values) | (values < low) | (values > high))
        impossible |= bad
        for run_id, value in zip(runs.loc[bad, "run_id"], values[bad], strict=True):
            found.setdefault(run_id[:8], []).append(f"{metric}={value:g}")
    notes = [f"{len(found)} run(s) hold impossible values and are left out: " + "; ".join(
        f"{run} {', '.join(values)}" for run, values in found.items())] if found else []
    return runs[~impossible], notes


def consistent_seeds(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The runs that agree with themselves on their seed (``record.seeds_said``: the param
    the comparison pairs on, the tag, the run name's ``-s<seed>``). A run they contradict (its
    seed relabelled in the store) is left out and a note names it with what it says. The study
    then finds no run of that seed it may reuse (``sweep.finished_runs``) and trains it
    again."""
    params = runs.get(f"params.{record.PARAM_SEED}", pd.Series("", index=runs.index))
    said = [record.seeds_said(param, tag, name) for param, tag, name in zip(
        params, tag_values(runs, record.TAG_SEED, ""),
        tag_values(runs, record.RUN_NAME_TAG, ""), strict=True)]
    contradicted = pd.Series([len(seeds) > 1 for seeds in said], index=runs.index)
    notes = [f"{int(contradicted.sum())} run(s) contradict themselves on their seed (param, "
             "tag, run name) and are left out: " + "; ".join(
                 f"{run_id[:8]} says {', '.join(map(str, sorted(seeds)))}"
                 for run_id, seeds, bad in zip(runs["run_id"], said, contradicted, strict=True)
                 if bad)] if contradicted.any() else []
    return runs[~contradicted], notes


def tag_values(runs: pd.DataFrame, tag: str, missing: str) -> pd.Series:
    """Each run's tag ``tag``, ``missing`` where a run has none, indexed as ``runs``."""
    column = f"tags.{tag}"
    return (runs[column] if column in runs else pd.Series(index=runs.index, dtype=object)
            ).fillna(missing)


def code_identities(runs: pd.DataFrame) -> pd.Series:
    """Each run's code identity (tag ``code_identity``; ``identity.UNRECORDED`` for a run
    recorded before identities were), indexed as ``runs``."""
    from regbench.run.identity import UNRECORDED

    return tag_values(runs, record.TAG_CODE_IDENTITY, UNRECORDED)


def one_code_per_arm(runs: pd.DataFrame, mix_code: bool) -> list[str]:
    """Check that each arm of ``runs`` (one run per arm and seed, as ``fetch_runs`` gives them)
    was trained by one code identity (``regbench.run.identity``). An arm of several raises
    CompareError naming the arm, its identities and their run counts, unless ``mix_code``;
    then the notes say so, one line per such arm. A note also counts the runs recorded without
    an identity."""
    from regbench.run.identity import UNRECORDED

    code = code_identities(runs)
    notes, mixed = [], []
    for arm, identities in code.groupby(runs["arm"], sort=False):
        counts = identities.value_counts()
        if len(counts) > 1:
            mixed.append(f"arm {arm} holds runs of {len(counts)} code identities: "
                         + ", ".join(f"{name} ({n} runs)" for name, n in counts.items()))
    if mixed and not mix_code:
        raise CompareError(f"{mixed[0]}{' (and more arms)' if len(mixed) > 1 else ''}; train "
                           "its seeds again with today's code, or give --mix-code to compare "
                           "them mixed")
    notes += [f"{line}: compared mixed (--mix-code)" for line in mixed]
    unrecorded = int((code == UNRECORDED).sum())
    if unrecorded:
        notes.append(f"{unrecorded} run(s) were recorded without a code identity (trained "
                     "before regbench recorded one): their code is known by commit only")
    return notes


def of_other_code(runs: pd.DataFrame) -> pd.Series:
    """Whether each run (columns arm, tags) was trained by other code than today's for its
    regularizer (``identity.of_option``): another code identity, or none recorded. A run of an
    option not registered in this process (a plugin not loaded) cannot be checked: False."""
    from regbench.errors import ConfigError
    from regbench.run import identity

    today = {}
    for name in runs["arm"].map(record.arm_name).unique():
        try:
            today[name] = identity.of_option(name).identity
        except ConfigError:
            today[name] = None
    expected = runs["arm"].map(record.arm_name).map(today)
    return expected.notna() & (code_identities(runs) != expected)


def keep_todays_code(runs: pd.DataFrame, reuse_stale: bool) -> tuple[pd.DataFrame, list[str]]:
    """What a command that trains (a study, a path, a verdict) analyses of ``runs``: the runs of
    today's code (``of_other_code``), a note counting those left out; with ``reuse_stale``
    every run, each arm's identities named (``one_code_per_arm``)."""
    stale = of_other_code(runs)
    if reuse_stale:
        notes = [f"reuse_stale: {int(stale.sum())} of {len(runs)} runs were trained by other "
                 "code than today's and are analysed all the same"] if stale.any() else []
        return runs, notes + one_code_per_arm(runs, mix_code=True)
    kept = runs[~stale]
    notes = [f"{int(stale.sum())} run(s) trained by other code than today's (another code "
             "identity, or none recorded) are left out (--reuse-stale keeps them)"
             ] if stale.any() else []
    return kept, notes + one_code_per_arm(kept, mix_code=False)


def fetch_runs(experiment: str, filter_string: str | None) -> RecordedRuns:
    """FINISHED runs of ``experiment`` matching ``filter_string``, with columns ``arm`` and
    ``seed`` added, each arm one configuration (``split_mixed_arms``) and one run per seed
    (``newest_per_seed``); sweep parent runs and calibration probes are left out. Raises
    CompareError when there is nothing."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        raise CompareError(f"no experiment '{experiment}' in {mlflow.get_tracking_uri()}; "
                           "record runs with 'make train' first")
    store = _sql_store()
    if store is not None and not filter_string:
        runs = _sql_finished_runs(store, found.experiment_id)
    else:
        condition = f"attributes.status = '{record.FINISHED}'"
        query = f"{condition} and {filter_string}" if filter_string else condition
        try:
            runs = mlflow.search_runs(experiment_ids=[found.experiment_id], filter_string=query,
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
    probe_column = f"tags.{record.TAG_CALIBRATION}"
    if probe_column in runs:  # a grid's calibration probe trains no run to compare
        runs = runs[runs[probe_column].isna()]
    arm_column = f"tags.{record.TAG_ARM}"
    if arm_column not in runs or runs[arm_column].isna().all():
        raise CompareError(f"the runs of '{experiment}' have no tag {record.TAG_ARM}: they were "
                           "not recorded by regbench train")
    left_out = list(runs.loc[runs[arm_column].isna(), "run_id"])
    ours = runs[runs[arm_column].notna()]
    ours = ours.assign(arm=ours[arm_column],
                       seed=pd.to_numeric(ours.get(f"params.{record.PARAM_SEED}"),
                                          errors="coerce"))
    ours, impossible = possible_values(ours)
    ours, contradicted = consistent_seeds(ours)
    if ours.empty:
        raise CompareError(f"no run of '{experiment}' is left to compare: "
                           f"{(impossible + contradicted)[0]}")
    ours, split = split_mixed_arms(ours)
    ours, repeated = newest_per_seed(ours)
    return RecordedRuns(ours.reset_index(drop=True), left_out,
                        impossible + contradicted + split + repeated)


@dataclass(frozen=True)
class RunArtifacts:
    """What a report draws besides the table: per arm, its curves (metric -> CurveBand over the
    arm's runs), and per run its test reliability bins (None where the run has no
    reliability.json)."""

    curves: dict[str, dict[str, object]]
    reliability: dict[str, object]

    @property
    def warnings(self) -> list[str]:
        missing = [run_id[:8] for run_id, bins in self.reliability.items() if bins is None]
        if not missing:
            return []
        more = " ..." if len(missing) > 10 else ""
        return [f"{len(missing)} run(s) have no {record.RELIABILITY_ARTIFACT} and are left out "
                f"of the reliability diagram: {', '.join(missing[:10])}{more}"]


def local_path(uri: str) -> Path | None:
    """The file a ``file://`` URI or a plain absolute path (the artifact URI of a run that
    MLflow's client made in a store created elsewhere) names; None for a remote URI."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(uri) if not parsed.scheme and uri.startswith("/") else None


def load_json(uri: str) -> dict:
    """A JSON artifact: read straight from disk when ``uri`` is local (``local_path``; MLflow's
    ``load_dict`` copies each file to a temporary folder first, once per run read), else
    through MLflow's artifact repository, without its progress bar (one per file read)."""
    import mlflow

    if (path := local_path(uri)) is not None:
        return json.loads(path.read_text())
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return mlflow.artifacts.load_dict(uri)


def _reliability(artifact_uri: str):
    """The reliability bins in ``<artifact_uri>/reliability.json``, or None. Read through the
    artifact URI that search_runs gave, not ``runs:/``, which costs a run lookup per read."""
    from regbench.run.metrics import ReliabilityBins

    try:
        return ReliabilityBins.from_dict(
            load_json(f"{artifact_uri}/{record.RELIABILITY_ARTIFACT}"))
    except Exception:
        return None


def _history(client, run_id: str, metric: str) -> list[float]:
    """One run's values of ``metric`` in step order, over MLflow's public client."""
    return [m.value for m in sorted(client.get_metric_history(run_id, metric),
                                    key=lambda m: m.step)]


def _sql_store():
    """The client's tracking store if it is MLflow's SQL store (SQLite, PostgreSQL), else None.

    MLflow's public client reads one run's history per call (and its SQL store's
    ``get_metric_history_bulk``, behind the UI's chart of many runs, one metric at a time as
    one ORM object per point: 5 s for 1,000 runs of 20 epochs). A report needs per arm and
    epoch only the mean, minimum and maximum of each curve, and per run its best value, so on a
    SQL store it has the database compute those (GROUP BY) over the store's private session and
    metric table (``_tracking_client.store``, ``ManagedSessionMaker``, ``SqlMetric``), pinned by
    tests/test_compare.py: both reads give the same bands and values. A tracking server has no
    such store and is read run by run over REST.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    store = getattr(getattr(MlflowClient(), "_tracking_client", None), "store", None)
    return store if isinstance(store, SqlAlchemyStore) else None


def _ignore(_: int) -> None:
    """A progress callback that shows nothing."""


def _chunks(run_ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(run_ids), BULK_CHUNK):
        yield run_ids[start:start + BULK_CHUNK]


def _sql_bands(store, run_ids: list[str], progress: Callable[[int], object]) -> dict:
    """metric -> CurveBand of the runs ``run_ids``, computed by the database: count, sum,
    minimum and maximum of the non-NaN values per metric and step, one query per chunk of runs,
    the chunks' aggregates then combined (mean = total sum / total count)."""
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.models import SqlMetric

    from regbench.run.plots import CurveBand

    value = SqlMetric.value
    columns = (SqlMetric.key, SqlMetric.step, sqlalchemy.func.count(value),
               sqlalchemy.func.sum(value), sqlalchemy.func.min(value), sqlalchemy.func.max(value))
    rows = []
    with store.ManagedSessionMaker() as session:
        for chunk in _chunks(run_ids):
            # every metric of the chunk's runs, the curves picked out below: with the keys in
            # the WHERE clause SQLite reads each key's rows of the whole table (4x slower)
            rows += session.query(*columns).filter(
                SqlMetric.run_uuid.in_(chunk), SqlMetric.is_nan.is_(False)).group_by(
                    SqlMetric.key, SqlMetric.step).all()
            progress(len(chunk))
    frame = pd.DataFrame(rows, columns=["metric", "step", "count", "sum", "low", "high"])
    steps = frame[frame["metric"].isin(record.CURVE_METRICS)].groupby(["metric", "step"]).agg(
        {"count": "sum", "sum": "sum", "low": "min", "high": "max"})
    bands = {}
    for metric, of_metric in steps.groupby(level="metric"):
        by_step = of_metric.droplevel("metric")
        by_step = by_step.reindex(range(by_step.index.max() + 1))  # NaN at a step without values
        bands[metric] = CurveBand(np.asarray(by_step["sum"] / by_step["count"], dtype=float),
                                  np.asarray(by_step["low"], dtype=float),
                                  np.asarray(by_step["high"], dtype=float), len(run_ids))
    return bands


def runs_by_arm(runs: pd.DataFrame) -> dict[str, list[str]]:
    """arm -> the ids of its runs, for a table of runs (columns run_id, arm), in table order."""
    return {arm: list(group["run_id"]) for arm, group in runs.groupby("arm", sort=False)}


def curve_bands(runs_by_arm: dict[str, list[str]], bulk: bool = True,
                progress: Callable[[int], object] = _ignore) -> dict[str, dict[str, object]]:
    """arm -> metric -> CurveBand over the arm's runs, for the contract's CURVE_METRICS: the
    database aggregates on a SQL store (``bulk``); else each run's history is read (one request
    per run and metric, spread over a pool of threads: the store's latency, not its work, is
    what they wait for) and aggregated here. ``progress(n)`` is called as each n runs are
    read."""
    from mlflow.tracking import MlflowClient

    from regbench.run.plots import CurveBand

    store = _sql_store() if bulk else None
    if store is not None:
        return {arm: _sql_bands(store, run_ids, progress) for arm, run_ids in runs_by_arm.items()}
    client = MlflowClient()

    def read(run_id):
        curves = {metric: values for metric in record.CURVE_METRICS
                  if (values := _history(client, run_id, metric))}
        progress(1)
        return curves

    bands = {}
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        for arm, run_ids in runs_by_arm.items():
            curves = list(pool.map(read, run_ids))
            bands[arm] = {metric: CurveBand.of_runs(series) for metric in record.CURVE_METRICS
                          if (series := [c[metric] for c in curves if metric in c])}
    return bands


def best_values(run_ids: list[str], metric: str, bulk: bool = True) -> dict[str, float]:
    """run id -> the largest non-NaN value the run logged of ``metric`` (NaN if none): one
    query per chunk of runs on a SQL store (``bulk``), else one request per run."""
    import sqlalchemy

    best = dict.fromkeys(run_ids, float("nan"))
    store = _sql_store() if bulk else None
    if store is None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            for run_id, values in zip(run_ids, pool.map(
                    lambda run_id: _history(client, run_id, metric), run_ids), strict=True):
                finite = [v for v in values if v == v]
                best[run_id] = max(finite) if finite else float("nan")
        return best
    from mlflow.store.tracking.dbmodels.models import SqlMetric

    with store.ManagedSessionMaker() as session:
        for chunk in _chunks(run_ids):
            best.update(session.query(SqlMetric.run_uuid, sqlalchemy.func.max(SqlMetric.value))
                        .filter(SqlMetric.key == metric, SqlMetric.run_uuid.in_(chunk),
                                SqlMetric.is_nan.is_(False))
                        .group_by(SqlMetric.run_uuid).all())
    return best


def _sql_finished_runs(store, experiment_id: str) -> pd.DataFrame:
    """The table ``mlflow.search_runs`` gives of the experiment's active FINISHED runs (run_id,
    experiment_id, status, artifact_uri, start_time, end_time, metrics.*, params.*, tags.*),
    in MLflow's order, read as rows from the SQL store's run, param, tag and latest-metric
    tables (MLflow builds an object per run, param, tag and metric first). Pinned against
    ``mlflow.search_runs`` by tests/test_compare.py."""
    import sqlalchemy
    from mlflow.entities import LifecycleStage
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlRun, SqlTag

    chosen = (SqlRun.experiment_id == int(experiment_id),
              SqlRun.lifecycle_stage == LifecycleStage.ACTIVE, SqlRun.status == record.FINISHED)
    info_columns = ("run_id", "experiment_id", "status", "artifact_uri", "start_time",
                    "end_time")
    with store.ManagedSessionMaker() as session:
        info = pd.DataFrame(session.query(
            SqlRun.run_uuid, SqlRun.experiment_id, SqlRun.status, SqlRun.artifact_uri,
            SqlRun.start_time, SqlRun.end_time).filter(*chosen).order_by(
                SqlRun.start_time.desc(), SqlRun.run_uuid).all(), columns=info_columns)

        def wide(table, value, prefix):
            rows = session.query(table.run_uuid, table.key, value).join(
                SqlRun, SqlRun.run_uuid == table.run_uuid).filter(*chosen).all()
            frame = pd.DataFrame(rows, columns=["run_id", "key", "value"])
            return frame.pivot(index="run_id", columns="key", values="value").add_prefix(prefix)

        value = sqlalchemy.case((SqlLatestMetric.is_nan, None), else_=SqlLatestMetric.value)
        metrics = wide(SqlLatestMetric, value, "metrics.").astype(float)
        params = wide(SqlParam, SqlParam.value, "params.")
        tags = wide(SqlTag, SqlTag.value, "tags.")
    info = info.assign(experiment_id=info["experiment_id"].astype(str),
                       start_time=pd.to_datetime(info["start_time"], unit="ms", utc=True),
                       end_time=pd.to_datetime(info["end_time"], unit="ms", utc=True))
    return info.set_index("run_id").join([metrics, params, tags]).reset_index()


def read_artifacts(runs: pd.DataFrame) -> RunArtifacts:
    """The curve bands of every arm in ``runs`` (columns run_id, arm, artifact_uri) and the
    reliability bins of every run, with one progress bar on stderr for the whole read, shown
    only when the read takes longer than PROGRESS_DELAY seconds."""
    from tqdm import tqdm

    with tqdm(total=2 * len(runs), desc=f"reading {len(runs)} runs", unit="read",
              delay=PROGRESS_DELAY, leave=False) as bar:
        def reliability_of(artifact_uri):
            bins = _reliability(artifact_uri)
            bar.update()
            return bins

        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            reliability = dict(zip(runs["run_id"], pool.map(reliability_of, runs["artifact_uri"]),
                                   strict=True))
        curves = curve_bands(runs_by_arm(runs), progress=bar.update)
    return RunArtifacts(curves, reliability)

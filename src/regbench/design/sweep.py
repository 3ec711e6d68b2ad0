"""A multirun is one MLflow parent run with every job as a nested child run.

``MlflowSweepCallback`` (a Hydra callback, configured in conf/config.yaml) runs in the process that
launches the jobs:

* on multirun start it creates and migrates the store once (so that parallel jobs never race to
  create the SQLite schema) and creates the parent run (params: the sweep's overrides; tags
  ``sweep=parent`` and ``sweep_dir``, the sweep's output folder). A job finds its parent by that
  folder, which Hydra gives every job of the sweep: no environment to inherit, so it works for
  jobs in this process, in joblib's worker processes and on Ray workers alike;
* on multirun end it counts the children by status, logs ``children_finished``,
  ``children_failed`` and ``children_killed``, and ends the parent FINISHED, or FAILED when a
  child did not finish.

A job that fails marks its own run FAILED and does not stop the others (see ``regbench train``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from regbench import record
from regbench.locations import default_tracking_uri


def job_threads(launcher: DictConfig) -> int | None:
    """TensorFlow threads per job so that parallel jobs share the cores without oversubscribing
    them: cores // jobs at once (joblib's ``n_jobs``, -1 meaning one per core); None when the
    launcher runs one job at a time."""
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        return None
    cores = os.cpu_count() or 1
    parallel = cores + 1 + n_jobs if n_jobs < 0 else n_jobs
    return max(1, cores // max(1, min(parallel, cores)))


def in_sweep() -> bool:
    """Whether this process runs a job of a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def find_parent_run(experiment_id: str, sweep_dir: str) -> str | None:
    """The id of the newest sweep parent run of ``sweep_dir`` in the experiment, or None."""
    import mlflow

    folder = sweep_dir.replace("'", "")
    parents = mlflow.MlflowClient().search_runs(
        [experiment_id], f"tags.{record.TAG_SWEEP} = '{record.SWEEP_PARENT}' and "
        f"tags.{record.TAG_SWEEP_DIR} = '{folder}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return parents[0].info.run_id if parents else None


def finished_runs(experiment_id: str, config_hash: str) -> list[tuple[str, str]]:
    """(run id, code identity) of each FINISHED training run of the experiment with this config
    hash, newest first; the identity is ``identity.UNRECORDED`` for a run recorded before
    identities were. Calibration probes are not training runs: those recorded before
    ``record.TAG_PROBE_HASH`` carry the hash of the config they probe under ``config_hash``;
    nor is a run that contradicts itself on its seed (``record.seeds_said``: relabelled), which
    no comparison reads, so its job trains again."""
    import mlflow

    from regbench.run.identity import UNRECORDED

    found = mlflow.MlflowClient().search_runs(
        [experiment_id], f"tags.{record.TAG_CONFIG_HASH} = '{config_hash}' and "
        f"attributes.status = '{record.FINISHED}'", order_by=["attributes.start_time DESC"])
    return [(run.info.run_id, run.data.tags.get(record.TAG_CODE_IDENTITY, UNRECORDED))
            for run in found if record.TAG_CALIBRATION not in run.data.tags
            and len(record.seeds_said(run.data.params.get(record.PARAM_SEED),
                                      run.data.tags.get(record.TAG_SEED),
                                      run.data.tags.get(record.RUN_NAME_TAG))) <= 1]


@dataclass(frozen=True)
class Reuse:
    """What a job finds of its config in the store (``reusable_run``): the run it reuses
    instead of training (None: it trains), whether that run is of today's code, and the
    FINISHED runs of the config whose code identity is not today's (``stale``: run id,
    identity)."""

    run_id: str | None
    current: bool
    stale: list[tuple[str, str]]

    def line(self, today: str) -> str | None:
        """One line for the job's output: why it skips, or why it trains although its config
        has FINISHED runs; None when it trains a config never trained."""
        others = ", ".join(sorted({identity for _, identity in self.stale}))
        if self.current:
            return (f"skipped: this config already has FINISHED run {self.run_id} of today's "
                    f"code {today} (rerun=true trains it again)")
        if self.run_id:
            return (f"skipped: reuse_stale=true reuses FINISHED run {self.run_id} of code "
                    f"{others}, not today's {today}")
        if self.stale:
            return (f"training again: this config's {len(self.stale)} FINISHED run(s) "
                    f"({', '.join(run_id[:8] for run_id, _ in self.stale)}) were trained by "
                    f"code {others}, not today's {today}; comparisons leave them out "
                    "(reuse_stale=true reuses them)")
        return None


def reusable_run(experiment_id: str, config_hash: str, today: str, reuse_stale: bool) -> Reuse:
    """The rule of resuming: a FINISHED run of the config and of today's code identity
    ``today`` is reused; a run of other code (or of none recorded) only with ``reuse_stale``,
    the newest such run."""
    runs = finished_runs(experiment_id, config_hash)
    stale = [(run_id, identity) for run_id, identity in runs if identity != today]
    current = next((run_id for run_id, identity in runs if identity == today), None)
    if current is not None:
        return Reuse(current, True, stale)
    return Reuse(stale[0][0] if reuse_stale and stale else None, False, stale)


CLAIMS_DIR = "claims"  # beside a SQLite store's database: one lock file per job being trained


@contextmanager
def claimed(experiment_id: str, cfg: DictConfig) -> Iterator[None]:
    """Hold the job's claim while it decides whether to train and trains: an exclusive lock on
    ``<store folder>/claims/<experiment id>-<config hash>.lock`` for a SQLite store (another
    store: no claim). Another process of this host about to run the same config in the same
    experiment (a second study on the store, a sweep started twice) waits here, says so, and
    then finds the FINISHED run and skips it: each job trains once. The lock is the kernel's
    (``fcntl``), so a claim dies with its process, kill -9 included."""
    from regbench.locations import file_lock
    from regbench.run import tracking
    from regbench.run.store import sqlite_path

    database = sqlite_path(str(cfg.mlflow.tracking_uri or default_tracking_uri()))
    if database is None:
        yield
        return
    folder = database.parent / CLAIMS_DIR
    folder.mkdir(exist_ok=True)
    with file_lock(folder / f"{experiment_id}-{tracking.config_hash(cfg)}.lock",
                   waiting=f"waiting for another process that trains this config "
                           f"(seed {cfg.seed}, {cfg.regularizer.name})"):
        yield


def job_reuse(experiment_id: str, cfg: DictConfig) -> tuple[Reuse, str]:
    """``reusable_run`` for the composed job config ``cfg``, and today's identity of it."""
    from regbench.run import identity, tracking

    today = identity.of_config(cfg).identity
    return reusable_run(experiment_id, tracking.config_hash(cfg), today,
                        bool(cfg.reuse_stale)), today


@dataclass(frozen=True)
class Job:
    """What a job of a multirun learns from Hydra and the store before it trains."""

    experiment_id: str
    parent_run_id: str | None
    threads: int | None
    output_dir: Path


def current_job(cfg: DictConfig) -> Job:
    """The running Hydra job of a multirun: its experiment, parent run, threads, folder."""
    from hydra.core.hydra_config import HydraConfig

    from regbench.run.store import use_store

    hydra_cfg = HydraConfig.get()
    experiment_id = use_store(cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name)
    return Job(experiment_id, find_parent_run(experiment_id, str(hydra_cfg.sweep.dir)),
               job_threads(hydra_cfg.launcher), Path(hydra_cfg.runtime.output_dir))


def train(cfg: DictConfig, parent_run_id: str | None, threads: int | None):
    """``training.train_and_evaluate`` of a job, TensorFlow imported quietly, SIGINT and SIGTERM
    raising KeyboardInterrupt (``processes.signals_as_interrupt``): its RunResult. An
    exception raised while an interrupt was requested is that interrupt (a KeyboardInterrupt
    that landed in C code can surface as a SystemError): KeyboardInterrupt, the run KILLED."""
    from regbench import processes

    processes.import_tensorflow_quietly()
    from regbench.run.training import train_and_evaluate

    with processes.signals_as_interrupt():
        try:
            return train_and_evaluate(cfg, parent_run_id=parent_run_id, threads=threads,
                                      stop_requested=processes.interrupt_requested)
        except Exception as error:
            if reason := processes.interrupt_requested():
                raise KeyboardInterrupt(reason) from error
            raise


def result_line(result) -> str:
    """A finished run's line: its name and its final test metrics."""
    metrics = result.metrics
    return (f"{result.run_name}: test accuracy {metrics[record.TEST_ACCURACY]:.4f}, test data "
            f"loss {metrics[record.TEST_DATA_LOSS]:.4f}, test total loss "
            f"{metrics[record.TEST_TOTAL_LOSS]:.4f}")


def failure_line(error: BaseException) -> str:
    """A failed job's line (its run, if it exists, is closed FAILED; the others go on)."""
    return f"error: job failed: {type(error).__name__}: {error}"


TRAIN_PROGRAM = (sys.executable, "-m", "regbench", "train")  # train_command

JOB_STATUS_FILE = "regbench_job_status"  # in each job's folder: finished, failed, killed, skipped
SKIPPED = "skipped"
SWEEP_JOBS_ENV, SWEEP_STARTED_ENV = "REGBENCH_SWEEP_JOBS", "REGBENCH_SWEEP_STARTED"


def _statuses(sweep_dir: str | Path, since: float = 0.0) -> list[str]:
    """The outcomes the sweep's jobs recorded (since ``since``, as for _job_folders)."""
    return [path.read_text().strip() for path in Path(sweep_dir).glob(f"*/{JOB_STATUS_FILE}")
            if path.stat().st_mtime >= since]


def end_job(job: Job, status: str) -> str:
    """Record the job's outcome in its folder; return the sweep's progress line: jobs done of
    the total, failed, skipped, elapsed and estimated time left (the total and the start come
    from the launching process's environment; a Ray worker, which has neither, says less)."""
    job.output_dir.mkdir(parents=True, exist_ok=True)
    (job.output_dir / JOB_STATUS_FILE).write_text(status + "\n")
    started = os.environ.get(SWEEP_STARTED_ENV)
    statuses = _statuses(job.output_dir.parent, float(started or 0))
    done, total = len(statuses), os.environ.get(SWEEP_JOBS_ENV, "?")
    line = (f"[{done}/{total} jobs] {statuses.count(record.FAILED.lower())} failed, "
            f"{statuses.count(SKIPPED)} skipped")
    if started:
        elapsed = time.time() - float(started)
        line += f", {elapsed / 60:.1f} min elapsed"
        ran = done - statuses.count(SKIPPED)
        if total.isdigit() and ran > 0:
            line += f", about {elapsed / ran * (int(total) - done) / 60:.1f} min left"
    return line


@dataclass
class SweepState:
    """The sweep this (launching) process runs: its parent run, set by the callback, and how it
    ended (None while it runs)."""

    run_id: str | None = None
    sweep_dir: str | None = None
    status: str | None = None
    started: float = 0.0  # time.time() at the sweep's start


ACTIVE = SweepState()


def _job_folders(sweep_dir: str, since: float) -> int:
    """How many jobs the sweep launched: Hydra writes each a ``.hydra/config.yaml`` (written
    after ``since``: an earlier sweep given the same folder does not count)."""
    return sum(path.stat().st_mtime >= since
               for path in Path(sweep_dir).glob("*/.hydra/config.yaml"))


def _running_here(children) -> set[int]:
    """The pids of this host's processes (other than this one) that run a RUNNING child."""
    here = socket.gethostname()
    return {int(c.data.tags[record.TAG_PID]) for c in children
            if c.info.status == record.RUNNING and c.data.tags.get(record.TAG_HOST) == here
            and c.data.tags.get(record.TAG_PID, "").isdigit()} - {os.getpid()}


def _stop_children(children: Callable[[], list]) -> None:
    """Ask every RUNNING child (of ``children()``, the store's answer) whose process lives on
    this host (a worker) to stop with SIGTERM, so that it closes its run KILLED; wait up to
    30 s for those runs to close or their processes to end (a worker of ``pool`` lives on)."""
    from regbench.run.tracking import process_alive

    pids = _running_here(children())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
            process_alive(pid) for pid in pids & _running_here(children())):
        time.sleep(0.2)


def close_parent(interrupted: bool, sweep: SweepState = ACTIVE) -> str:
    """End the sweep's parent run (default: this process's Hydra multirun) with a true status
    and return it: KILLED when the sweep was interrupted (its running children are stopped
    first), FAILED when a child did not finish or a launched job left no run, FINISHED
    otherwise. Children still RUNNING whose process is gone end KILLED. Logs
    ``children_<status>``, ``children_missing`` and ``children_skipped`` (the jobs are counted
    by their folders: ``write_job_folder``, ``end_job``)."""
    import mlflow

    from regbench.run.tracking import process_gone

    client = mlflow.MlflowClient()
    experiment_id = client.get_run(sweep.run_id).info.experiment_id

    def children():
        return client.search_runs([experiment_id],
                                  f"tags.{record.PARENT_TAG} = '{sweep.run_id}'",
                                  max_results=50_000)

    if interrupted:
        _stop_children(children)
    found = children()
    for child in found:
        if child.info.status == record.RUNNING and process_gone(child.data.tags):
            client.set_terminated(child.info.run_id, record.KILLED)
    found = children()
    counts = {status: sum(c.info.status == status for c in found) for status in record.STATUSES}
    skipped = _statuses(sweep.sweep_dir, sweep.started).count(SKIPPED)
    missing = max(0, _job_folders(sweep.sweep_dir, sweep.started) - len(found) - skipped)
    for status, count in counts.items():
        client.log_metric(sweep.run_id, record.CHILDREN_METRICS[status], count)
    client.log_metric(sweep.run_id, record.CHILDREN_MISSING, missing)
    client.log_metric(sweep.run_id, record.CHILDREN_SKIPPED, skipped)
    complete = counts[record.FINISHED] == len(found) and missing == 0
    sweep.status = (record.KILLED if interrupted else
                     record.FINISHED if complete else record.FAILED)
    client.set_terminated(sweep.run_id, sweep.status)
    jobs = len(found) + missing + skipped
    print(f"sweep parent run {sweep.run_id} {sweep.status}: {counts[record.FINISHED]} of "
          f"{jobs - skipped} jobs run finished"
          + (f", {missing} failed before their run existed" if missing else "")
          + (f"; skipped {skipped} of {jobs} jobs: already finished" if skipped else ""),
          file=sys.stderr)
    return sweep.status


def open_parent(experiment_id: str, job_name: str, overrides: list[str], sweep_dir: str,
                launcher: str) -> SweepState:
    """Create a sweep's parent run (tags ``sweep=parent``, ``sweep_dir``, the commit, the
    launcher, this process; param: the sweep's overrides) and return the sweep's state."""
    import mlflow

    from regbench.run.tracking import git_commit, process_tags

    parent = mlflow.MlflowClient().create_run(
        experiment_id, run_name=f"sweep-{job_name}",
        tags={record.TAG_SWEEP: record.SWEEP_PARENT, record.TAG_SWEEP_DIR: sweep_dir,
              record.TAG_GIT_COMMIT: git_commit(), record.TAG_LAUNCHER: launcher,
              **process_tags()})
    mlflow.MlflowClient().log_param(parent.info.run_id, record.PARAM_SWEEP_OVERRIDES,
                                    " ".join(overrides)[:6000])
    print(f"sweep parent run {parent.info.run_id}", file=sys.stderr)
    # file times can be a little coarse: a second of slack for the job folders it counts
    return SweepState(parent.info.run_id, sweep_dir, None, time.time() - 1)


def write_job_folder(output_dir: Path, cfg: DictConfig, overrides: list[str]) -> None:
    """What Hydra writes of a job into its folder and ``close_parent`` counts:
    ``.hydra/config.yaml`` (the job's config) and ``.hydra/overrides.yaml``."""
    from omegaconf import OmegaConf

    folder = output_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), folder / "overrides.yaml")


class MlflowSweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from regbench.run.store import use_store

        experiment_id = use_store(config.mlflow.tracking_uri, config.mlflow.experiment_name)
        state = open_parent(experiment_id, config.hydra.job.name,
                            list(config.hydra.overrides.task),
                            str(config.hydra.sweep.dir).replace("'", ""),
                            str(config.hydra.launcher.get("_target_", "")))
        ACTIVE.run_id, ACTIVE.sweep_dir, ACTIVE.status = state.run_id, state.sweep_dir, None
        ACTIVE.started = state.started

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        close_parent(interrupted=False)


def folder_stamp() -> str:
    """A random suffix that keeps a multirun's folder its own (``own_folder``)."""
    return uuid.uuid4().hex[:8]


def own_folder(folder: str, arguments: list[str], stamp: str) -> str:
    """A multirun's output folder: the one its command line names (``hydra.sweep.dir=``), else
    Hydra's dated default with ``stamp`` (two sweeps started in one second stay apart)."""
    named = any(a.startswith("hydra.sweep.dir=") for a in arguments)
    return folder if named else f"{folder}-{stamp}"


def train_command(*arguments: str) -> list[str]:
    """``regbench train ARGUMENTS`` as a child process of this Python."""
    return [*TRAIN_PROGRAM, *arguments]

"""One pool of workers for a whole command: every job of every multirun a study, path, tuned
comparison or verdict starts goes to the same long-lived worker processes.

``run_commands(commands)`` takes the ``regbench train -m ...`` command lines a round would have
started one after another (``sweep.train_command``) and runs their jobs itself:

* each command is composed in this process (``overrides.composed_jobs``: the checks of
  ``regbench train``), and the round's commands into one experiment are one sweep, as Hydra's
  multirun makes one: one parent run (``sweep.open_parent``; its overrides param lists each
  command's, ``;``-separated), a folder per job (``sweep.write_job_folder``), every job a
  nested run, the parent closed by ``sweep.close_parent`` with the same counts;
* a job whose config has a FINISHED run of today's code is skipped here, as the job itself
  would skip it (``sweep.job_reuse``); a round whose every job is skipped opens no parent;
* the jobs left, of all commands, are handed to the workers longest expected first (the mean
  ``train_seconds`` of the experiment's FINISHED runs of the same regularizer and weight;
  jobs never measured before those, the strongest first), at most one per worker at a time,
  so that both cores stay busy to the end and nothing waits in a queue when a stop comes;
* the workers (loky's reusable executor, the engine of Hydra's joblib launcher: one per core,
  ``cores // workers`` TensorFlow threads each) import TensorFlow and MLflow once, live for the
  whole command, and train a job as ``regbench train`` does (``sweep.train``): the run's
  records are the same;
* one progress line per finished job: jobs done of the command's total, the job's run, its
  wall time, failures, and the time left (jobs left x the mean wall time of a job / workers);
* Ctrl-C or SIGTERM: the running jobs are stopped (SIGTERM to their workers, which close their
  runs KILLED), the parents end KILLED, the workers are shut down; exit code 130. A worker
  whose command process is gone (kill -9) stops its job the same way and exits.

Any other command line (not ``regbench train``) is run as a child process, as before; so is a
``regbench train`` multirun that a search plugin samples or a launcher of its own runs (the Ray
cluster's).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from regbench import processes, record
from regbench.config import registry
from regbench.design import sweep

WORKER_IDLE_TIMEOUT = 3600  # s: a worker idle that long ends (a command's looks are seconds)


def workers() -> int:
    """One worker per core."""
    return os.cpu_count() or 1


def _start_worker(threads: int, parent: int, folder: str, plugins: str) -> None:
    """A worker's start: Ctrl-C left to its command process while idle (a job installs its own
    handler), the orphan watch, TensorFlow with ``threads`` threads, and MLflow. ``folder``
    and ``plugins`` (the command's working folder and REGBENCH_PLUGINS) are the worker's
    already, as it started from the command; they are its arguments so that a later command
    of the same process in another folder, or with other plugins, gets workers of its own
    (``executor``)."""
    os.chdir(folder)
    os.environ[registry.PLUGINS_ENV] = plugins
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    processes.stop_with_parent(parent)
    processes.import_tensorflow_quietly(threads)
    import mlflow  # noqa: F401


def executor():
    """The command's pool (created at the first call, then the same one while it works; loky
    reuses an executor only for the same arguments, so a call from another folder or with
    other plugins starts new workers)."""
    from joblib.externals.loky import get_reusable_executor

    count = workers()
    return get_reusable_executor(
        max_workers=count, timeout=WORKER_IDLE_TIMEOUT, initializer=_start_worker,
        initargs=(max(1, (os.cpu_count() or 1) // count), os.getpid(), os.getcwd(),
                  os.environ.get(registry.PLUGINS_ENV, "")))


@dataclass(frozen=True)
class Job:
    """One job for a worker: its config (the task's, as YAML), its parent run, its folder."""

    config_yaml: str
    experiment_id: str
    parent_run_id: str
    output_dir: str
    name: str  # for the progress line: regularizer, weight, seed
    expected_seconds: float  # infinite: never measured
    weight: float

    @property
    def order(self) -> tuple[float, float]:
        """Longest expected first; never measured before measured, the strongest first."""
        return (-self.expected_seconds, -self.weight)


SKIPPED = sweep.SKIPPED.upper()  # a job another process trained while this one waited
DONE = (record.FINISHED, SKIPPED)  # outcomes that leave the job's config with a FINISHED run


@dataclass(frozen=True)
class Outcome:
    status: str  # record.FINISHED, FAILED or KILLED, or SKIPPED
    seconds: float  # the job's wall time in its worker


def _work(job: Job) -> Outcome:
    """Run one job in a worker, holding its claim (``sweep.claimed``): skip it if its config has
    a FINISHED run of today's code by now (another process trained it meanwhile), else train
    (``sweep.train``; the worker set its threads) and print its result or failure line; record
    its status in its folder."""
    started = time.perf_counter()
    cfg = OmegaConf.create(job.config_yaml)
    status = record.FAILED
    try:
        with sweep.claimed(job.experiment_id, cfg):
            if not cfg.rerun and sweep.job_reuse(job.experiment_id, cfg)[0].run_id:
                status = SKIPPED
            else:
                result = sweep.train(cfg, job.parent_run_id, None)
                print(sweep.result_line(result), file=sys.stderr, flush=True)
                status = record.FINISHED
    except KeyboardInterrupt:
        status = record.KILLED
    except Exception as error:
        print(sweep.failure_line(error), file=sys.stderr, flush=True)
    (Path(job.output_dir) / sweep.JOB_STATUS_FILE).write_text(status.lower() + "\n")
    return Outcome(status, time.perf_counter() - started)


# the launchers whose jobs the pool runs instead (Hydra's own, and joblib's: the presets')
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher")


def local_launcher(cfg: DictConfig) -> bool:
    """Whether a composed job's launcher runs its jobs on this machine (``LOCAL_LAUNCHERS``); a
    multirun on another (the Ray cluster's) is left to Hydra."""
    return str(cfg.hydra.launcher.get("_target_", "")).endswith(LOCAL_LAUNCHERS)


@dataclass
class Multirun:
    """One ``regbench train -m`` command line's jobs: composed configs (Hydra's node included),
    the tasks' configs, and which of them are skipped (a FINISHED run of today's code)."""

    arguments: list[str]
    configs: list[DictConfig]
    tasks: list[DictConfig] = field(default_factory=list)
    skips: list[bool] = field(default_factory=list)


def _measured_seconds(experiment_id: str) -> dict[tuple[str, str], float]:
    """Mean ``train_seconds`` of the experiment's FINISHED training runs by (regularizer,
    weight) params."""
    import mlflow

    runs = mlflow.search_runs([experiment_id], f"attributes.status = '{record.FINISHED}'")
    name, weight = f"params.{record.PARAM_REGULARIZER}", "params.regularizer.weight"
    seconds = f"metrics.{record.TRAIN_SECONDS}"
    if runs.empty or not {name, seconds} <= set(runs.columns):
        return {}
    runs = runs.assign(weight=runs[weight].fillna("") if weight in runs else "")
    means = runs.groupby([name, "weight"], dropna=False)[seconds].mean()
    return {(str(n), str(w)): float(s) for (n, w), s in means.items() if s == s}


def _skips(multirun: Multirun, experiment_id: str) -> None:
    """Which of the multirun's jobs a FINISHED run of today's code lets skip (``rerun`` off),
    as the job itself would decide (``sweep.job_reuse``), with its line when it trains
    although its config has runs of other code."""
    from regbench.config.overrides import override_words, task_config

    multirun.tasks = [task_config(cfg) for cfg in multirun.configs]
    for task in multirun.tasks:
        reuse, today = sweep.job_reuse(experiment_id, task)
        skip = bool(reuse.run_id) and not task.rerun
        if not skip and not task.rerun and (line := reuse.line(today)):
            print(line, file=sys.stderr)
        multirun.skips.append(skip)
    if any(multirun.skips):
        overrides = " ".join(override_words(multirun.arguments))
        print(f"{sum(multirun.skips)} of {len(multirun.skips)} jobs of {overrides} skipped: "
              "their configs have FINISHED runs of today's code", file=sys.stderr)


def _open_sweep(multiruns: list[Multirun], experiment_id: str, stamp: str
                ) -> tuple[sweep.SweepState | None, list[Job]]:
    """The round's multiruns of one experiment as one sweep: a parent run (none when every job
    is skipped) and a folder per job, numbered over the round; the jobs to train."""
    from regbench.config.overrides import override_words

    if all(skip for m in multiruns for skip in m.skips):
        return None, []
    first = multiruns[0].configs[0]
    overrides = [" ".join(override_words(m.arguments)) for m in multiruns]
    state = sweep.open_parent(experiment_id, str(first.hydra.job.name), [" ; ".join(overrides)],
                              sweep.own_folder(str(first.hydra.sweep.dir).replace("'", ""),
                                               multiruns[0].arguments, stamp),
                              f"{__name__}.executor")
    measured = _measured_seconds(experiment_id)
    jobs, number = [], 0
    for multirun in multiruns:
        for cfg, task, skip in zip(multirun.configs, multirun.tasks, multirun.skips,
                                   strict=True):
            output_dir = Path(state.sweep_dir) / str(number)
            number += 1
            sweep.write_job_folder(output_dir, task, list(cfg.hydra.overrides.task))
            if skip:
                (output_dir / sweep.JOB_STATUS_FILE).write_text(sweep.SKIPPED + "\n")
                continue
            name, weight = str(task.regularizer.name), task.regularizer.get("weight")
            jobs.append(Job(
                OmegaConf.to_yaml(task), experiment_id, state.run_id, str(output_dir),
                f"{name}{f' {weight:g}' if weight else ''} seed {task.seed}",
                measured.get((name, str(weight if weight is not None else "")), float("inf")),
                float(weight or 0.0)))
    return state, jobs


class _Progress:
    """The command's progress line, one per finished job."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.started = total, label, time.time()
        self.outcomes: list[Outcome] = []

    def line(self, job: Job, outcome: Outcome) -> str:
        self.outcomes.append(outcome)
        done, left = len(self.outcomes), self.total - len(self.outcomes)
        failed = sum(o.status not in DONE for o in self.outcomes)
        mean = sum(o.seconds for o in self.outcomes) / done
        return (f"[{done}/{self.total} jobs{', ' + self.label if self.label else ''}] "
                f"{job.name} {outcome.status} in {outcome.seconds:.0f} s; {failed} not "
                f"finished, {(time.time() - self.started) / 60:.1f} min elapsed, about "
                f"{left * mean / workers() / 60:.1f} min left")


def _run_jobs(jobs: list[Job], label: str) -> list[Outcome]:
    """Hand the jobs to the pool, at most one per worker at a time, in the given order; print
    the progress; return their outcomes (a worker that died: FAILED; the jobs after it go to
    the pool ``executor`` starts anew)."""
    progress = _Progress(len(jobs), label)
    waiting, running = list(jobs), {}
    outcomes = []
    while waiting or running:
        if reason := processes.interrupt_requested():
            raise KeyboardInterrupt(reason)
        while waiting and len(running) < workers():
            job = waiting.pop(0)
            running[executor().submit(_work, job)] = job
        done, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
        for future in done:
            job = running.pop(future)
            outcome = _outcome(future, job)
            outcomes.append(outcome)
            print(progress.line(job, outcome), file=sys.stderr, flush=True)
    return outcomes


def _outcome(future: Future, job: Job) -> Outcome:
    try:
        return future.result()
    except Exception as error:  # the worker died (killed, out of memory): its run is closed
        print(f"error: job {job.name} failed: its worker ended ({type(error).__name__}: "
              f"{error})", file=sys.stderr)
        return Outcome(record.FAILED, 0.0)


def _close(sweeps: list[sweep.SweepState], interrupted: bool) -> list[str]:
    """Close every opened parent (``sweep.close_parent``); their statuses."""
    with processes.signals_held():
        return [sweep.close_parent(interrupted, state) for state in sweeps]


def _train_multiruns(arguments: list[list[str]], label: str) -> int:
    from regbench.config.overrides import composed_jobs
    from regbench.errors import ConfigError, StoreError
    from regbench.run.store import use_store
    from regbench.run.tracking import close_stale_runs

    code, by_experiment = 0, {}
    for command in arguments:
        try:
            configs, searched = composed_jobs(command)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            code = 2
            continue
        if searched or not local_launcher(configs[0]):  # Hydra runs them (a search, Ray)
            code = max(code, processes.run_commands([sweep.train_command(*command)]))
            continue
        where = (configs[0].mlflow.tracking_uri, configs[0].mlflow.experiment_name)
        by_experiment.setdefault(where, []).append(Multirun(command, configs))
    sweeps, jobs, stamp, opened = [], [], sweep.folder_stamp(), []
    try:
        for (uri, experiment), multiruns in by_experiment.items():
            experiment_id = use_store(uri, experiment)
            opened.append(experiment_id)
            if closed := close_stale_runs(experiment_id):
                print(f"{closed} run(s) of {experiment} whose process is gone (killed) closed "
                      "KILLED", file=sys.stderr)
            for multirun in multiruns:
                _skips(multirun, experiment_id)
            state, found = _open_sweep(multiruns, experiment_id, stamp)
            sweeps += [state] if state else []
            jobs += found
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        _close(sweeps, interrupted=False)
        return 2
    if not jobs:
        print("every job of the round has a FINISHED run: nothing started", file=sys.stderr)
        return code
    try:
        with processes.signals_as_interrupt():
            outcomes = _run_jobs(sorted(jobs, key=lambda job: job.order), label)
            statuses = _close(sweeps, interrupted=False)
    except KeyboardInterrupt:
        _close(sweeps, interrupted=True)
        with contextlib.suppress(Exception):
            executor().shutdown(wait=True, kill_workers=True)
        # a job that opened its run after its parent closed (a worker just handed it) and was
        # killed with its worker: its process is gone now, so its run ends KILLED too
        with processes.signals_held():
            for experiment_id in opened:
                close_stale_runs(experiment_id)
        return processes.EXIT_INTERRUPTED
    failed = any(o.status not in DONE for o in outcomes) or any(
        status != record.FINISHED for status in statuses)
    return max(code, 1 if failed else 0)


def run_commands(commands: list[list[str]], label: str = "") -> int:
    """Run a round's commands: ``regbench train`` ones (``sweep.TRAIN_PROGRAM``) as jobs on the
    pool, as the module's docstring says, the others as child processes
    (``processes.run_commands``); the worst exit code, 130 at once on an interrupt. ``label``
    names the round in the progress lines."""
    n = len(sweep.TRAIN_PROGRAM)
    trains = [c[n:] for c in commands if tuple(c[:n]) == sweep.TRAIN_PROGRAM]
    others = [c for c in commands if tuple(c[:n]) != sweep.TRAIN_PROGRAM]
    code = processes.run_commands(others) if others else 0
    if code == processes.EXIT_INTERRUPTED or not trains:
        return code
    return max(code, _train_multiruns(trains, label))

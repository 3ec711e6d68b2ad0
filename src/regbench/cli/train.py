"""``regbench train [key=value ...]`` (``make train``): the command-line layer.

It checks every job a command line asks for before Hydra runs any (one line of error, exit 2),
then, per job, resolves what only the command line knows (the sweep's parent run, the threads a
parallel launcher leaves each job, signals, exit codes) and calls
``regbench.run.training.train_and_evaluate``. TensorFlow is imported only when a job really trains,
so ``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import math
import os
import sys
import time

import hydra
from omegaconf import DictConfig

from regbench import processes, record
from regbench.cli import common
from regbench.config.overrides import (
    HYDRA_HELP_FLAGS,
    HYDRA_PREVIEW_FLAGS,
    check_overrides,
    is_multirun,
)
from regbench.errors import ConfigError
from regbench.locations import CONF_DIR


def _store_failures() -> tuple[type[BaseException], ...]:
    """What a tracking store raises when it stops working: MLflow's errors, SQLAlchemy's
    (a database gone read-only or corrupt) and the file system's (a full disk)."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    return MlflowException, SQLAlchemyError, OSError


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_entry(cfg: DictConfig) -> float:
    """One run, or one job of a multirun (which records its outcome and prints the sweep's
    progress)."""
    from regbench.design import sweep

    if not sweep.in_sweep():
        return _train(cfg, parent_run_id=None, threads=None)
    try:
        job = sweep.current_job(cfg)
    except Exception as error:
        print(f"error: job failed before its run existed: {error}", file=sys.stderr)
        return float("nan")
    if job.threads is not None:  # a worker of a parallel launcher: it ends with its sweep
        processes.stop_with_parent()
    status = record.FAILED
    try:
        with sweep.claimed(job.experiment_id, cfg):
            if not cfg.rerun:
                reuse, today = sweep.job_reuse(job.experiment_id, cfg)
                if line := reuse.line(today):
                    print(line, file=sys.stderr)
                if reuse.run_id:
                    status = sweep.SKIPPED
                    return float("nan")
            best = _train(cfg, job.parent_run_id, job.threads)
        status = record.FAILED if math.isnan(best) else record.FINISHED  # NaN: the job failed
        return best
    except (KeyboardInterrupt, SystemExit):
        status = record.KILLED
        raise
    finally:
        print(sweep.end_job(job, status.lower()), file=sys.stderr)


def _train(cfg: DictConfig, parent_run_id: str | None, threads: int | None) -> float:
    """Train and print the result line; errors as one line and an exit code, except in a
    multirun, where a failed job returns NaN and the others go on."""
    from regbench.design import sweep
    from regbench.errors import DataError, StoreError
    from regbench.run.store import one_line
    from regbench.run.tracking import MetricsLost

    store_failures = _store_failures()
    try:
        result = sweep.train(cfg, parent_run_id, threads)
    except KeyboardInterrupt as interrupt:
        print(f"{common.interrupted_line(interrupt)}: the run is marked KILLED", file=sys.stderr)
        sys.exit(processes.EXIT_INTERRUPTED)
    except Exception as error:
        if sweep.in_sweep():  # the job's run, if it exists, is closed; the parent counts the job
            print(sweep.failure_line(error), file=sys.stderr)
            return float("nan")
        if isinstance(error, (ConfigError, DataError, StoreError)):
            common.fail(str(error))
        if isinstance(error, MetricsLost):
            common.fail(f"{error}; the run is marked FAILED")
        if isinstance(error, store_failures):
            common.fail(f"the tracking store failed during the run ({type(error).__name__}: "
                     f"{one_line(error)}); the run is marked FAILED where the store still "
                     "answers")
        raise
    print(sweep.result_line(result))
    return result.best_monitored


def _run_sweep() -> None:
    """Hydra's multirun, with the sweep's parent run closed truly whatever stops it: KILLED on
    Ctrl-C or SIGTERM (its running jobs stopped first), FAILED on a job that exits the process;
    exit code 1 when any job did not finish. A signal whose KeyboardInterrupt became another
    error where it landed (OmegaConf's clean-up fails on the config it was composing for the
    next job, and Hydra exits 1 on that error) still counts as the interrupt it was."""
    from regbench.design import sweep
    from regbench.processes import signals_held

    with processes.signals_as_interrupt():
        try:
            hydra_entry()
        except (KeyboardInterrupt, SystemExit) as stop:
            code = (processes.EXIT_INTERRUPTED if processes.interrupt_requested()
                    or isinstance(stop, KeyboardInterrupt) else stop.code)
            if sweep.ACTIVE.run_id and sweep.ACTIVE.status is None:
                with signals_held():
                    sweep.close_parent(interrupted=code == processes.EXIT_INTERRUPTED)
            sys.exit(code)
    if sweep.ACTIVE.status not in (None, record.FINISHED):
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    """Check every job's config in one line of error before Hydra runs any of them, or shows
    any (``--cfg``, ``--info``: a preview is refused exactly as the run would be); give a
    multirun a sweep folder of its own (two sweeps started in the same second stay apart).
    ``argv``: the command's arguments (default: this process's); Hydra reads them from
    ``sys.argv``, so they are put there."""
    if argv is not None:
        sys.argv[1:] = argv
    arguments = sys.argv[1:]
    multirun = is_multirun(arguments)
    if HYDRA_HELP_FLAGS.intersection(arguments):
        hydra_entry()
        return 0
    try:
        output_dir, jobs = check_overrides(arguments)
    except ConfigError as error:
        common.fail(str(error))
    if HYDRA_PREVIEW_FLAGS.intersection(arguments):
        hydra_entry()
        return 0
    if multirun:
        from regbench.design import sweep

        folder = sweep.own_folder(output_dir, arguments, sweep.folder_stamp())
        if folder != output_dir:
            sys.argv.append(f"hydra.sweep.dir={folder}")
        os.environ[sweep.SWEEP_JOBS_ENV] = str(jobs or "?")
        os.environ[sweep.SWEEP_STARTED_ENV] = str(time.time())
        _run_sweep()
    else:
        hydra_entry()
    return 0


def sweep_main(argv: list[str]) -> int:
    """``regbench sweep ARGUMENTS`` (``make sweep``): the multirun ``train -m ARGUMENTS``, its
    jobs run on the pool of workers (``regbench.design.pool``) when its launcher is a local
    one, by Hydra otherwise; help and previews as ``train -m`` gives them."""
    arguments = ["-m", *argv]
    if HYDRA_HELP_FLAGS.union(HYDRA_PREVIEW_FLAGS).intersection(argv):
        return main(arguments)
    try:
        check_overrides(arguments)
    except ConfigError as error:
        common.fail(str(error))
    from regbench.design import pool, sweep

    return pool.run_commands([sweep.train_command(*arguments)])


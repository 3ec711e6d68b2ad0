"""``python -m regbench.train [key=value ...]`` (``make train``): the command-line layer.

It checks every job a command line asks for before Hydra runs any (one line of error, exit 2),
then, per job, resolves what only the command line knows (the sweep's parent run, the threads a
parallel launcher leaves each job, signals, exit codes) and calls
``regbench.training.train_and_evaluate``. TensorFlow is imported only when a job really trains,
so ``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import sys
import uuid

import hydra
from omegaconf import DictConfig

from regbench import cli, record
from regbench.overrides import HYDRA_INFO_FLAGS, check_overrides
from regbench.paths import CONF_DIR
from regbench.validation import ConfigError


def _job_context(cfg: DictConfig) -> tuple[str | None, int | None]:
    """(parent run id, TensorFlow threads) of this Hydra job: both None outside a multirun."""
    from regbench import store, sweep

    if not sweep.in_sweep():
        return None, None
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    experiment_id = store.use_store(cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name)
    return (sweep.find_parent_run(experiment_id, str(hydra_cfg.sweep.dir)),
            sweep.job_threads(hydra_cfg.launcher))


def _store_failures() -> tuple[type[BaseException], ...]:
    """What a tracking store raises when it stops working: MLflow's errors, SQLAlchemy's
    (a database gone read-only or corrupt) and the file system's (a full disk)."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    return MlflowException, SQLAlchemyError, OSError


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_entry(cfg: DictConfig) -> float:
    from regbench.data import DataError
    from regbench.store import StoreError
    from regbench.sweep import in_sweep

    store_failures = _store_failures()
    try:
        parent, threads = _job_context(cfg)
        cli.import_tensorflow_quietly()
        from regbench.training import train_and_evaluate

        with cli.signals_as_interrupt():
            result = train_and_evaluate(cfg, parent_run_id=parent, threads=threads)
    except KeyboardInterrupt as interrupt:
        print(f"interrupted ({interrupt or 'Ctrl-C'}): the run is marked KILLED", file=sys.stderr)
        sys.exit(cli.EXIT_INTERRUPTED)
    except Exception as error:
        if in_sweep():  # the job's run, if it exists, is closed; the parent counts the job
            print(f"error: job failed: {type(error).__name__}: {error}", file=sys.stderr)
            return float("nan")
        if isinstance(error, (ConfigError, DataError, StoreError)):
            cli.fail(str(error))
        if isinstance(error, store_failures):
            cli.fail(f"the tracking store failed during the run ({type(error).__name__}: "
                     f"{error}); the run is marked FAILED where the store still answers")
        raise
    metrics = result.metrics
    print(f"{result.run_name}: test accuracy {metrics[record.TEST_ACCURACY]:.4f}, test data loss "
          f"{metrics[record.TEST_DATA_LOSS]:.4f}, test total loss "
          f"{metrics[record.TEST_TOTAL_LOSS]:.4f}")
    return result.best_monitored


def _run_sweep() -> None:
    """Hydra's multirun, with the sweep's parent run closed truly whatever stops it: KILLED on
    Ctrl-C or SIGTERM (its running jobs stopped first), FAILED on a job that exits the process;
    exit code 1 when any job did not finish."""
    from regbench import sweep
    from regbench.tracking import signals_held

    with cli.signals_as_interrupt():
        try:
            hydra_entry()
        except (KeyboardInterrupt, SystemExit) as stop:
            code = stop.code if isinstance(stop, SystemExit) else cli.EXIT_INTERRUPTED
            if sweep.ACTIVE.run_id and sweep.ACTIVE.status is None:
                with signals_held():
                    sweep.close_parent(interrupted=code == cli.EXIT_INTERRUPTED)
            sys.exit(code)
    if sweep.ACTIVE.status not in (None, record.FINISHED):
        sys.exit(1)


def main() -> None:
    """Check every job's config in one line of error before Hydra runs any of them; give a
    multirun a sweep folder of its own (two sweeps started in the same second stay apart)."""
    arguments = sys.argv[1:]
    multirun = "-m" in arguments or "--multirun" in arguments
    if not HYDRA_INFO_FLAGS.intersection(arguments):
        try:
            output_dir = check_overrides(arguments)
        except ConfigError as error:
            cli.fail(str(error))
        if multirun and not any(a.startswith("hydra.sweep.dir=") for a in arguments):
            sys.argv.append(f"hydra.sweep.dir={output_dir}-{uuid.uuid4().hex[:8]}")
    if multirun:
        _run_sweep()
    else:
        hydra_entry()


if __name__ == "__main__":
    main()

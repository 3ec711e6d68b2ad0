"""``python -m regbench.train [key=value ...]`` (``make train``): the command-line layer.

It checks every job a command line asks for before Hydra runs any (one line of error, exit 2),
then, per job, resolves what only the command line knows (the sweep's parent run, the threads a
parallel launcher leaves each job, signals, exit codes) and calls
``regbench.training.train_and_evaluate``. TensorFlow is imported only when a job really trains,
so ``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import sys

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


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_entry(cfg: DictConfig) -> float:
    from regbench.data import DataError
    from regbench.store import StoreError
    from regbench.sweep import in_sweep

    try:
        parent, threads = _job_context(cfg)
        cli.import_tensorflow_quietly()
        from regbench.training import train_and_evaluate

        with cli.signals_as_interrupt():
            result = train_and_evaluate(cfg, parent_run_id=parent, threads=threads)
    except (ConfigError, DataError, StoreError) as error:
        cli.fail(str(error))
    except KeyboardInterrupt as interrupt:
        print(f"interrupted ({interrupt or 'Ctrl-C'}): the run is marked KILLED", file=sys.stderr)
        sys.exit(cli.EXIT_INTERRUPTED)
    except Exception as error:
        if not in_sweep():
            raise
        # in a sweep: the job's run (if it got that far) is already FAILED; the others go on
        print(f"error: job failed: {type(error).__name__}: {error}", file=sys.stderr)
        return float("nan")
    metrics = result.metrics
    print(f"{result.run_name}: test accuracy {metrics[record.TEST_ACCURACY]:.4f}, test data loss "
          f"{metrics[record.TEST_DATA_LOSS]:.4f}, test total loss "
          f"{metrics[record.TEST_TOTAL_LOSS]:.4f}")
    return result.best_monitored


def main() -> None:
    """Check every job's config in one line of error before Hydra runs any of them."""
    arguments = sys.argv[1:]
    if not HYDRA_INFO_FLAGS.intersection(arguments):
        try:
            check_overrides(arguments)
        except ConfigError as error:
            cli.fail(str(error))
    hydra_entry()


if __name__ == "__main__":
    main()

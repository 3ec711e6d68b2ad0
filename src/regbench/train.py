"""``python -m regbench.train [key=value ...]``: one Hydra-composed run, recorded in MLflow.

The order is the contract: validate the config, load the data, build the model (nothing here
creates a run, so bad input leaves no trace), then open the run, fit, evaluate on test once and
log model, plots and config. TensorFlow and MLflow are imported only when a run really trains,
so ``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from regbench.config import ConfigError, arm_label, check_overrides, validate
from regbench.paths import CONF_DIR
from regbench.sweep import in_sweep, job_threads, parent_run_id

HYDRA_INFO_FLAGS = {"-h", "--help", "--hydra-help", "-i", "--info", "-c", "--cfg",
                    "-sc", "--shell-completion"}


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite and TerminateOnNaN stopped training."""


def _verbosity(value: str):
    return value if value == "auto" else int(value)


def _log_plots(history: dict[str, list[float]], arm: str, probs, labels) -> None:
    import mlflow
    import numpy as np

    from regbench.metrics import reliability_bins
    from regbench.plots import plot_learning_curves, plot_reliability

    bins = reliability_bins(probs, labels)
    mlflow.log_dict(bins.to_dict(), "reliability.json")
    with tempfile.TemporaryDirectory() as folder:
        curves = {arm: {key: np.array([values]) for key, values in history.items()}}
        plot_learning_curves(curves, Path(folder) / "learning_curves.png")
        plot_reliability({arm: bins}, Path(folder) / "reliability.png")
        mlflow.log_artifacts(folder, artifact_path="plots")


def _launcher_threads() -> int | None:
    from hydra.core.hydra_config import HydraConfig

    return job_threads(HydraConfig.get().launcher) if HydraConfig.initialized() else None


def _set_tf_threads(tf, threads: int) -> None:
    """Intra-op threads for this process; a process that already ran TensorFlow (a reused
    worker of a parallel launcher) keeps the setting its first job made."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass


def train(cfg: DictConfig) -> float:
    """Train and record one run; return the best value of ``trainer.monitor`` (for sweepers).

    Besides the contract's artifacts, the test predictions' reliability bins are logged as
    ``reliability.json``, so that the comparison can pool them per arm."""
    validate(cfg)
    import keras
    import mlflow
    import numpy as np
    import tensorflow as tf
    from hydra.utils import instantiate

    from regbench import data, tracking
    from regbench.callbacks import training_callbacks
    from regbench.metrics import brier_score, expected_calibration_error
    from regbench.models import build_mlp, compile_classifier, inference_copy

    splits = data.load(cfg.data, split_seed=cfg.data.split_seed)
    experiment_id = tracking.use_store(cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name)
    threads = cfg.trainer.threads or _launcher_threads()
    if threads:
        _set_tf_threads(tf, threads)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    arm = arm_label(cfg.regularizer)
    model = compile_classifier(
        build_mlp(cfg.model, lambda: instantiate(cfg.regularizer.kernel)), cfg.trainer)
    callbacks, early_stop = training_callbacks(cfg.trainer, _verbosity(cfg.trainer.verbose),
                                               logger=tracking.EpochMetricsCallback())
    parent = parent_run_id(experiment_id)
    tags = {**({"mlflow.parentRunId": parent} if parent else {}),
            "regularizer": cfg.regularizer.name, "model": cfg.model.name, "data": cfg.data.name,
            "seed": str(cfg.seed), "git_commit": tracking.git_commit(),
            "data_sha256": splits.sha256, "arm": arm}
    run_name = f"{arm}-{cfg.model.name}-{cfg.data.name}-s{cfg.seed}"

    with tracking.recorded_run(experiment_id, run_name, tags):
        mlflow.log_params(tracking.flatten(OmegaConf.to_container(cfg, resolve=True)))
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        started = time.perf_counter()
        history = model.fit(
            splits.x_train, splits.y_train, batch_size=cfg.trainer.batch_size,
            epochs=cfg.trainer.epochs, validation_data=(splits.x_val, splits.y_val),
            callbacks=callbacks, verbose=_verbosity(cfg.trainer.verbose)).history
        train_seconds = time.perf_counter() - started
        if not np.all(np.isfinite(history["loss"])):
            mlflow.set_tag("failure", "nan_loss")
            raise TrainingDiverged(
                f"loss became {history['loss'][-1]} in epoch {len(history['loss'])}; "
                "TerminateOnNaN stopped training")
        test = model.evaluate(splits.x_test, splits.y_test, batch_size=1024, verbose=0,
                              return_dict=True)
        probs = model.predict(splits.x_test, batch_size=1024, verbose=0)
        mlflow.log_metrics({
            "test_accuracy": test["accuracy"],
            "test_data_loss": test["data_loss"],
            "test_total_loss": test["loss"],
            "test_penalty": test["penalty"],
            "test_ece": expected_calibration_error(probs, splits.y_test),
            "test_brier": brier_score(probs, splits.y_test),
            "best_epoch": early_stop.best_epoch + 1,
            "epochs_trained": len(history["loss"]),
            "train_seconds": train_seconds,
        })
        _log_plots(history, arm, probs, splits.y_test)
        tracking.log_keras_model(inference_copy(model), splits.x_test[:5])
        print(f"{run_name}: test accuracy {test['accuracy']:.4f}, test data loss "
              f"{test['data_loss']:.4f}, test total loss {test['loss']:.4f}")
    return float(early_stop.best)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_entry(cfg: DictConfig) -> float:
    from regbench.data import DataError
    from regbench.tracking import StoreError

    try:
        return train(cfg)
    except (ConfigError, DataError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:
        print(f"interrupted ({interrupt or 'Ctrl-C'}): the run is marked KILLED", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        if not in_sweep():
            raise
        # in a sweep: the job's run (if it got that far) is already FAILED; the others go on
        print(f"error: job failed: {type(error).__name__}: {error}", file=sys.stderr)
        return float("nan")


def main() -> None:
    """Check every job's config in one line of error before Hydra runs any of them."""
    arguments = sys.argv[1:]
    if not HYDRA_INFO_FLAGS.intersection(arguments):
        try:
            check_overrides(arguments)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
    hydra_entry()


if __name__ == "__main__":
    main()

"""``train_and_evaluate(cfg)``: one run trained, tested once and recorded in MLflow.

A library function, callable from the command line (``regbench train``), a test, a notebook or
another driver alike: it takes everything it needs as arguments and reads no Hydra state,
installs no signal handler and never exits the process. The order is the contract: validate the
config, load the data, build the model (nothing so far creates a run, so bad input leaves no
trace), then open the run, fit, evaluate on test once, and log metrics, plots and the model.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from regbench import record
from regbench.config.validation import validate


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite and TerminateOnNaN stopped training."""


@dataclass(frozen=True)
class RunResult:
    """What one run recorded: its id and name, its arm, its final metrics (``record`` names)
    and the best value of ``trainer.monitor`` (what a hyperparameter sweeper optimises)."""

    run_id: str
    run_name: str
    arm: str
    metrics: dict[str, float]
    best_monitored: float


def _verbosity(value: str):
    return value if value == "auto" else int(value)


def configure_tensorflow(seed: int, deterministic: bool, threads: int | None) -> None:
    """Seed Python, NumPy and TensorFlow; optionally op determinism and a thread count
    (``processes.set_tensorflow_threads``: a reused worker keeps what its first job set)."""
    import keras
    import tensorflow as tf

    from regbench.processes import set_tensorflow_threads

    set_tensorflow_threads(threads)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


SHARE_EXAMPLES = 1024  # training examples on which the penalty's shares are measured


def _final_metrics(model, splits, history: dict, early_stop, seconds: float):
    """The contract's FINAL_METRICS of a fitted model (one pass over test, the penalty's
    shares on the first SHARE_EXAMPLES training examples), and its test predictions."""
    from regbench.run.metrics import brier_score, expected_calibration_error
    from regbench.run.models import penalty_shares

    test = model.evaluate(splits.x_test, splits.y_test, batch_size=1024, verbose=0,
                          return_dict=True)
    probs = model.predict(splits.x_test, batch_size=1024, verbose=0)
    loss_share, gradient_share = penalty_shares(model, splits.x_train[:SHARE_EXAMPLES],
                                                splits.y_train[:SHARE_EXAMPLES])
    metrics = {
        record.TEST_ACCURACY: test["accuracy"],
        record.TEST_DATA_LOSS: test["data_loss"],
        record.TEST_TOTAL_LOSS: test["loss"],
        record.TEST_PENALTY: test["penalty"],
        record.TEST_ECE: expected_calibration_error(probs, splits.y_test),
        record.TEST_BRIER: brier_score(probs, splits.y_test),
        record.BEST_EPOCH: early_stop.best_epoch + 1,
        record.EPOCHS_TRAINED: len(history["loss"]),
        record.TRAIN_SECONDS: seconds,
        record.PENALTY_LOSS_SHARE: loss_share,
        record.PENALTY_GRADIENT_SHARE: gradient_share,
    }
    return {key: float(value) for key, value in metrics.items()}, probs


def _log_plots(history: dict[str, list[float]], arm: str, probs, labels) -> None:
    import mlflow

    from regbench.run.metrics import reliability_bins
    from regbench.run.plots import CurveBand, plot_learning_curves, plot_reliability

    bins = reliability_bins(probs, labels)
    mlflow.log_dict(bins.to_dict(), record.RELIABILITY_ARTIFACT)
    learning_curves, reliability = record.PLOTS
    with tempfile.TemporaryDirectory() as folder:
        curves = {arm: {key: CurveBand.of_runs([values]) for key, values in history.items()}}
        plot_learning_curves(curves, Path(folder) / learning_curves)
        plot_reliability({arm: bins}, Path(folder) / reliability)
        mlflow.log_artifacts(folder, artifact_path=record.PLOTS_DIR)


def _run_tags(cfg: DictConfig, arm: str, data_sha256: str, parent_run_id: str | None
              ) -> dict[str, str]:
    """The tags a run starts with (``record``'s names): what it trains, its code, its data."""
    from regbench.run import identity, tracking

    return {record.TAG_REGULARIZER: cfg.regularizer.name, record.TAG_MODEL: cfg.model.name,
            record.TAG_DATA: cfg.data.name, record.TAG_SEED: str(cfg.seed),
            record.TAG_GIT_COMMIT: tracking.git_commit(), record.TAG_DATA_SHA256: data_sha256,
            record.TAG_ARM: arm, record.TAG_CONFIG_HASH: tracking.config_hash(cfg),
            **identity.of_config(cfg).tags(),
            **({record.PARENT_TAG: parent_run_id} if parent_run_id else {})}


def _fit(model, splits, trainer: DictConfig, callbacks: list, verbose) -> tuple[dict, float]:
    """``model.fit`` on the splits: its history and wall seconds; TrainingDiverged (the run
    tagged ``failure=nan_loss``) when the loss was not finite."""
    import mlflow
    import numpy as np

    started = time.perf_counter()
    history = model.fit(
        splits.x_train, splits.y_train, batch_size=trainer.batch_size, epochs=trainer.epochs,
        validation_data=(splits.x_val, splits.y_val), callbacks=callbacks,
        verbose=verbose).history
    seconds = time.perf_counter() - started
    if not np.all(np.isfinite(history["loss"])):
        mlflow.set_tag(record.TAG_FAILURE, record.FAILURE_NAN_LOSS)
        raise TrainingDiverged(f"loss became {history['loss'][-1]} in epoch "
                               f"{len(history['loss'])}; TerminateOnNaN stopped training")
    return history, seconds


class PhaseClock:
    """Wall seconds of a run's phases: ``with clock("data"): ...`` adds the block's time to
    ``clock.seconds["seconds_data"]`` (``record.PHASE_METRICS``' names)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        metric = record.PHASE_METRICS[record.PHASES.index(phase)]
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[metric] = self.seconds.get(metric, 0.0) + time.perf_counter() - started


def train_and_evaluate(cfg: DictConfig, parent_run_id: str | None = None,
                       threads: int | None = None,
                       stop_requested: Callable[[], str | None] = lambda: None) -> RunResult:
    """Train, test and record one run of the composed config ``cfg``; return its RunResult.

    ``parent_run_id`` nests the run under a sweep's parent run; ``threads`` is TensorFlow's
    thread count when ``trainer.threads`` is null (None: TensorFlow's default);
    ``stop_requested()`` gives a reason to stop (None: go on), asked at every batch Keras
    reports (every ``trainer.steps_per_execution``-th) and before the run is declared
    FINISHED: once it gives one, KeyboardInterrupt(reason) is raised.
    Raises ConfigError, DataError or StoreError before any run exists; once the run exists,
    any exception (TrainingDiverged for a NaN loss, tracking.MetricsLost for epoch metrics the
    store did not keep) or KeyboardInterrupt closes it FAILED or KILLED and propagates.
    """
    phases = PhaseClock()
    with phases("config"):
        validate(cfg)
        import mlflow

        from regbench.config import registry
        from regbench.run import data, store, tracking
        from regbench.run.callbacks import EpochMetricsCallback, training_callbacks
        from regbench.run.models import build_mlp, compile_classifier, inference_copy

        penalty = registry.build(cfg.regularizer)
        registry.check(cfg.regularizer.name, penalty)
    with phases("data"):
        splits = data.load(cfg.data, split_seed=cfg.data.split_seed)
    with phases("store"):
        experiment_id = store.use_store(cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name)
    with phases("model"):
        configure_tensorflow(cfg.seed, cfg.trainer.deterministic,
                             cfg.trainer.threads or threads)
        arm = record.arm_label(cfg.regularizer.name,
                               registry.strengths(cfg.regularizer.name, penalty))
        model = compile_classifier(build_mlp(
            cfg.model, lambda: registry.build(cfg.regularizer),
            acts_on=registry.get(cfg.regularizer.name).acts_on), cfg.trainer)
    verbose = _verbosity(cfg.trainer.verbose)
    logger = EpochMetricsCallback()
    callbacks, early_stop = training_callbacks(cfg.trainer, verbose, logger=logger,
                                               stop_requested=stop_requested)
    tags = _run_tags(cfg, arm, splits.sha256, parent_run_id)
    name = record.run_name(arm, cfg.model.name, cfg.data.name, cfg.seed)

    with tracking.recorded_run(experiment_id, name, tags) as run:
        mlflow.log_params(tracking.flatten(OmegaConf.to_container(cfg, resolve=True)))
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), record.CONFIG_ARTIFACT)
        history, seconds = _fit(model, splits, cfg.trainer, callbacks, verbose)
        with phases("epoch_metrics"):
            tracking.complete_epoch_metrics(run.info.run_id, logger.epochs)
        with phases("evaluate"):
            metrics, probs = _final_metrics(model, splits, history, early_stop, seconds)
        mlflow.log_metrics(metrics)
        with phases("plots"):
            _log_plots(history, arm, probs, splits.y_test)
        with phases("save_model"):
            tracking.log_keras_model(inference_copy(model), splits.x_test[:5])
        mlflow.log_metrics(phases.seconds)
        if reason := stop_requested():
            raise KeyboardInterrupt(reason)
    return RunResult(run.info.run_id, name, arm, metrics, float(early_stop.best))

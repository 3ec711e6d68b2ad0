"""The Keras callbacks of a training run, in the order they must run at each epoch's end.

ReduceLROnPlateau and EarlyStopping watch ``trainer.monitor`` (EarlyStopping restores the best
epoch's weights at the end unless ``trainer.restore_best_weights`` is false: the run is then
judged on its last epoch's weights); TerminateOnNaN stops a diverging
run; StopWhenRequested stops at a reported batch's start once the process was asked to stop;
EpochTimer adds ``epoch_seconds`` (wall time of the epoch, validation included) to the logs;
the MLflow callback (EpochMetricsCallback) comes last so that it logs what the others added
(``learning_rate``, ``epoch_seconds``).
"""

import logging
import time
from collections.abc import Callable

import keras
import mlflow
from mlflow.keras import MlflowCallback


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds``: wall-clock seconds from epoch begin to epoch end."""

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._started


class StopWhenRequested(keras.callbacks.Callback):
    """Raises KeyboardInterrupt(reason) at the start of the next training or validation batch
    Keras reports (every ``trainer.steps_per_execution``-th), and at an epoch's end, once
    ``stop_requested()`` gives a reason (None: go on). A signal
    handler's own KeyboardInterrupt lands in whatever code runs at that moment and may be
    swallowed there; this one is raised where nothing catches it."""

    def __init__(self, stop_requested: Callable[[], str | None]):
        super().__init__()
        self.stop_requested = stop_requested

    def _stop_if_requested(self, *_, **__):
        reason = self.stop_requested()
        if reason:
            raise KeyboardInterrupt(reason)

    on_train_batch_begin = on_test_batch_begin = on_epoch_end = _stop_if_requested


def training_callbacks(trainer, verbose, logger: keras.callbacks.Callback,
                       stop_requested: Callable[[], str | None]):
    """(callbacks for ``model.fit``, the EarlyStopping among them) for a ``trainer`` config;
    ``stop_requested`` as StopWhenRequested's."""
    early_stop = keras.callbacks.EarlyStopping(
        monitor=trainer.monitor, patience=trainer.early_stopping_patience,
        restore_best_weights=trainer.restore_best_weights)
    callbacks = [
        StopWhenRequested(stop_requested),
        keras.callbacks.ReduceLROnPlateau(monitor=trainer.monitor, factor=trainer.lr_factor,
                                          patience=trainer.lr_patience, verbose=int(verbose != 0)),
        early_stop,
        keras.callbacks.TerminateOnNaN(),
        EpochTimer(),
        logger,
    ]
    return callbacks, early_stop


class EpochMetricsCallback(MlflowCallback):
    """MLflow's Keras callback, logging each epoch's logs at step = epoch (0-based), and
    keeping what it logged (``epochs``: epoch -> metrics), so that the run can check the store
    holds it all (``tracking.complete_epoch_metrics``).

    It logs synchronously, where MlflowCallback logs through MLflow's asynchronous queue: that
    queue's thread polls with a 1 s timeout, and each flush (a run needs one before it checks
    its metrics and one as it ends) waits for it and restarts it, about 1 s each, longer than
    a small-data run's logging itself (``make bench``, figure 8). An epoch the store refuses (a
    database locked past its busy timeout) does not stop training: one line says so, and
    ``complete_epoch_metrics`` logs it again before the run ends.

    It leaves out MlflowCallback's ``on_test_end``, which logs every validation pass again
    as ``validation_*`` at step 0 (duplicates of ``val_*``, several points per step).
    """

    def __init__(self):
        super().__init__()
        self.epochs: dict[int, dict[str, float]] = {}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        self.epochs[epoch] = {key: float(value) for key, value in logs.items()}
        try:
            mlflow.log_metrics(self.epochs[epoch], step=epoch, synchronous=True,
                               model_id=self.model_id)
        except Exception as error:
            text = str(error).strip()
            logging.getLogger(__name__).warning(
                "the store refused epoch %d's metrics (%s); regbench logs them again before "
                "the run ends", epoch, text.splitlines()[0] if text else type(error).__name__)

    def on_test_end(self, logs=None):
        return None

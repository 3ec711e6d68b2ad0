"""The Keras callbacks of a training run, in the order they must run at each epoch's end.

ReduceLROnPlateau and EarlyStopping watch ``trainer.monitor``; TerminateOnNaN stops a diverging
run; StopWhenRequested stops at a reported batch's start once the process was asked to stop;
EpochTimer adds ``epoch_seconds`` (wall time of the epoch, validation included) to the logs;
the MLflow callback (EpochMetricsCallback) comes last so that it logs what the others added
(``learning_rate``, ``epoch_seconds``).
"""

import time
from collections.abc import Callable

import keras
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
        restore_best_weights=True)
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
    holds it all (``tracking.complete_epoch_metrics``): MLflow logs them asynchronously and
    its callback swallows errors.

    It leaves out MlflowCallback's ``on_test_end``, which logs every validation pass again
    as ``validation_*`` at step 0 (duplicates of ``val_*``, several points per step).
    """

    def __init__(self):
        super().__init__()
        self.epochs: dict[int, dict[str, float]] = {}

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            self.epochs[epoch] = {key: float(value) for key, value in logs.items()}
        super().on_epoch_end(epoch, logs)

    def on_test_end(self, logs=None):
        return None

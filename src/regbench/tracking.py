"""The MLflow side of a run: the store, the run record contract and an honest run status.

Contract (DESIGN.md, "Run record contract"): params are the resolved config flattened with dotted
keys; tags name regularizer, model, data, seed, git commit and data sha256; a run ends FINISHED on
success, FAILED (tags ``error_type``, ``error_message``) on an exception, KILLED on Ctrl-C or
SIGTERM, and is never left RUNNING by a process that has exited.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.keras import MlflowCallback
from mlflow.tracking import MlflowClient

from regbench.paths import PROJECT_ROOT, default_tracking_uri


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///<path>`` URI; None for any other store."""
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith(
        "sqlite:///") else None


def sqlite_artifact_root(tracking_uri: str, experiment_name: str) -> str | None:
    """For ``sqlite:///<dir>/x.db``: ``<dir>/artifacts/<experiment>`` as a file URI; else None
    (a tracking server chooses its own artifact store)."""
    database = sqlite_path(tracking_uri)
    if database is None:
        return None
    return (database.parent / "artifacts" / re.sub(r"[^\w.-]", "_", experiment_name)).as_uri()


class StoreError(RuntimeError):
    """The tracking store cannot be used; the message names it and says why."""


def use_store(tracking_uri: str | None, experiment_name: str) -> str:
    """Point MLflow at the store (default: the project's SQLite), create the experiment if
    needed, and return its id. A store that cannot be created or written raises StoreError."""
    uri = tracking_uri or default_tracking_uri()
    try:
        database = sqlite_path(uri)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
            if not os.access(database.parent, os.W_OK) or (
                    database.exists() and not os.access(database, os.W_OK)):
                raise PermissionError(f"{database} is not writable")
        mlflow.set_tracking_uri(uri)
        client = MlflowClient()
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(
                experiment_name, artifact_location=sqlite_artifact_root(uri, experiment_name))
        except MlflowException:  # created meanwhile by a parallel job
            return client.get_experiment_by_name(experiment_name).experiment_id
    except (OSError, MlflowException) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StoreError(f"tracking store {uri} cannot be used: {reason}") from error


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": "1", "c": "[1, 2]"}."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def git_commit() -> str:
    """HEAD of the project's checkout, suffixed ``-dirty`` when tracked files are modified."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def process_tags() -> dict[str, str]:
    """Where the run's process lives, so that a RUNNING run whose process is gone can be found."""
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


def _raise_interrupt(signum, frame):
    """SIGINT or SIGTERM as a KeyboardInterrupt, so that both unwind like Ctrl-C (also in a
    process started in the background, where the shell leaves SIGINT ignored)."""
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextmanager
def recorded_run(experiment_id: str, run_name: str, tags: dict[str, str]) -> Iterator[Any]:
    """Start a run and always end it with a true status: FINISHED, FAILED (error tags) or KILLED
    (Ctrl-C or SIGTERM). Exceptions propagate after the run is closed."""
    previous = {signum: signal.signal(signum, _raise_interrupt)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                           tags={**tags, **process_tags()})
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException as error:
        mlflow.set_tags({"error_type": type(error).__name__, "error_message": str(error)[:4000]})
        raise
    finally:
        mlflow.flush_async_logging()
        mlflow.end_run(status=status)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class EpochMetricsCallback(MlflowCallback):
    """MLflow's Keras callback, logging each epoch's logs at step = epoch (0-based).

    It leaves out MlflowCallback's ``on_test_end``, which logs every validation pass again
    as ``validation_*`` at step 0 (duplicates of ``val_*``, several points per step).
    """

    def on_test_end(self, logs=None):
        return None


class _KerasFlavor:
    """``mlflow.keras`` for ``Model.log``, creating the model folder before saving into it.

    ``mlflow.keras.save_model`` writes the input example before it creates the folder, so
    ``mlflow.keras.log_model(..., input_example=...)`` fails with FileNotFoundError
    (mlflow/mlflow#16183, open in 3.17). Everything else is mlflow.keras' own.
    """

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path, **kwargs):
        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)


def log_keras_model(model, input_example) -> None:
    """Log the Keras model as the MLflow model ``model`` of the active run (what
    ``mlflow.keras.log_model`` does), with a signature inferred from ``input_example``, the
    example itself, and the pinned TensorFlow, Keras and MLflow as its requirements."""
    import keras
    import tensorflow as tf
    from mlflow.models import Model, infer_signature

    signature = infer_signature(input_example, model.predict(input_example, verbose=0))
    Model.log(
        artifact_path=None, name="model", flavor=_KerasFlavor, model=model, signature=signature,
        input_example=input_example,
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}",
                          f"mlflow=={mlflow.__version__}"],
    )

"""The tracking store: pointing MLflow at it, creating it and its experiments, refusing it in one
line when it cannot be used. No TensorFlow: compare, runs and train all open stores here.

A ``sqlite:///<dir>/<file>.db`` store keeps each experiment's artifacts in
``<dir>/artifacts/<experiment>``; any other URI (a tracking server) chooses its own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from regbench.paths import default_tracking_uri


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



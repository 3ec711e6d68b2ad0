"""The tracking store: pointing MLflow at it, creating it and its experiments, refusing it in one
line when it cannot be used. No TensorFlow: compare, runs and train all open stores here.

A ``sqlite:///<dir>/<file>.db`` store keeps each experiment's artifacts in
``<dir>/artifacts/<experiment>``; any other URI (a tracking server) chooses its own.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from regbench.errors import StoreError
from regbench.locations import default_tracking_uri, file_lock

SCHEMA_LOGGER = "mlflow.store.db.utils"  # "Creating initial MLflow database tables..."


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


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def _refused_in_one_line(uri: str) -> Iterator[None]:
    """Any failure inside the block becomes StoreError naming the store, in one line."""
    try:
        yield
    except Exception as error:
        raise StoreError(f"tracking store {uri} cannot be used: {one_line(error)}") from error


@contextmanager
def creation_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.lock`` beside a SQLite database (no-op for other
    stores), so that processes on this host create and migrate the schema one at a time:
    concurrent first connections otherwise race in alembic's migrations and lose runs."""
    database = sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    with file_lock(database.with_name(database.name + ".lock")):
        yield


# How long a tracking server that does not answer is waited for: MLflow retries a request
# with exponential back-off (its defaults, 7 retries of factor 2 and a 120 s timeout, wait
# over 4 minutes); 4 retries of factor 2 wait 0 + 4 + 8 + 16 s, about 30 s with jitter.
# A variable already set in the environment wins.
SERVER_PATIENCE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
                   "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def connect(tracking_uri: str | None = None, create: bool = True) -> MlflowClient:
    """Point MLflow at the store (default: ``locations.default_tracking_uri()``), create and migrate
    it if it is new (under ``creation_lock``; with ``create=False``, for a command that only
    reads, a SQLite store that does not exist is refused and nothing is made), and return a
    client. A tracking server is given up on after about 30 s (SERVER_PATIENCE). Any failure
    (a folder that cannot be written, a path that is a folder, a corrupt database, a server
    that does not answer) raises StoreError in one line."""
    uri = tracking_uri or default_tracking_uri()
    database = sqlite_path(uri)
    if not create and database is not None and not database.exists():
        raise StoreError(f"tracking store {uri} does not exist (no file {database}); record "
                         "runs with 'make train' first, or name another with --tracking-uri")
    if uri.startswith(("http://", "https://")):
        for variable, value in SERVER_PATIENCE.items():
            os.environ.setdefault(variable, value)
    with _refused_in_one_line(uri):
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
            if database.exists() and not database.is_file():
                raise IsADirectoryError(f"{database} is not a file")
            if not os.access(database.parent, os.W_OK) or (
                    database.exists() and not os.access(database, os.W_OK)):
                raise PermissionError(f"{database} is not writable")
        mlflow.set_tracking_uri(uri)
        # MLflow's INFO lines on creating and migrating a SQLite store: not news to a user
        logging.getLogger(SCHEMA_LOGGER).setLevel(logging.WARNING)
        with creation_lock(uri):
            client = MlflowClient()
            client.search_experiments(max_results=1)  # creates or migrates the schema now
        return client


def use_store(tracking_uri: str | None, experiment_name: str) -> str:
    """``connect`` to the store, create the experiment if needed, and return its id; any
    failure raises StoreError."""
    client = connect(tracking_uri)
    uri = mlflow.get_tracking_uri()
    with _refused_in_one_line(uri):
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(
                experiment_name, artifact_location=sqlite_artifact_root(uri, experiment_name))
        except MlflowException:  # created meanwhile by a parallel job
            return client.get_experiment_by_name(experiment_name).experiment_id

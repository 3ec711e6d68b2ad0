"""Recording a training run in MLflow: its params, an honest status, its Keras model.

What is recorded, by name, is the contract in ``regbench.record``. A run ends FINISHED on
success, FAILED (tags ``error_type``, ``error_message``) on an exception, KILLED on
KeyboardInterrupt (the command-line layer turns SIGINT and SIGTERM into one), and carries the
``host`` and ``pid`` of its process so that a run whose process died is found by
``regbench-runs --stale``.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from regbench import record
from regbench.locations import PROJECT_ROOT, REPORTS_DIR
from regbench.processes import interrupt_requested, signals_held


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


def config_hash(cfg) -> str:
    """sha256 (first 16 hex digits) of the resolved config as sorted JSON, without its
    ``record.result_neutral_keys``: two runs with the same hash compute the same thing."""
    import hashlib
    import json

    from omegaconf import OmegaConf

    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    neutral = record.result_neutral_keys(flat)
    kept = {key: value for key, value in flat.items() if key not in neutral}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def git_commit(root: Path = PROJECT_ROOT, reports: Path = REPORTS_DIR) -> str:
    """HEAD of the project's checkout ``root``, suffixed ``-dirty`` when tracked files are
    modified, except those under ``reports``: the project's commands write them (``make
    path`` rewrites the path report that ``make tuned`` trains after), they are not code."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                f":(exclude){os.path.relpath(reports, root)}").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def process_tags() -> dict[str, str]:
    """Where the run's process lives, so that a RUNNING run whose process is gone can be found."""
    return {record.TAG_HOST: socket.gethostname(), record.TAG_PID: str(os.getpid())}


def _end_active_run_killed() -> None:
    """At interpreter exit, a run still active was cut short: end it KILLED. Registered after
    MLflow's own exit handler, so it runs first (atexit is last in, first out), and MLflow's,
    which would end it FINISHED, then finds no active run."""
    with contextlib.suppress(Exception):  # a store that stopped answering: runs --stale
        if mlflow.active_run() is not None:
            mlflow.end_run(status=record.KILLED)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def process_gone(tags: Mapping[str, Any], host: str | None = None) -> bool:
    """Whether a run's process (its ``host`` and ``pid`` tags) is known to be gone: it ran on
    ``host`` (default: this one) and that pid no longer exists. A run of another host, or
    without the tags, is never called gone."""
    pid = str(tags.get(record.TAG_PID, ""))
    return (tags.get(record.TAG_HOST) == (host or socket.gethostname()) and pid.isdigit()
            and not process_alive(int(pid)))


def close_stale_runs(experiment_id: str) -> int:
    """End KILLED (tag ``killed_by``) every RUNNING run of the experiment whose process on this
    host is gone (``process_gone``: cut short by kill -9 or a power loss, too hard to close its
    run); return how many. A command that starts runs in an experiment calls it first (each
    round of the pool, each report's run), so such a run does not stay RUNNING once the
    experiment is used again; runs of other hosts and of live processes are left alone."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    running = client.search_runs([experiment_id], f"attributes.status = '{record.RUNNING}'",
                                 max_results=50_000)
    gone = [run.info.run_id for run in running if process_gone(run.data.tags)]
    for run_id in gone:
        mark_killed(client, run_id, STALE_CLOSER)
    return len(gone)


def mark_killed(client, run_id: str, by: str) -> None:
    """End a run whose process is gone KILLED, tagged ``killed_by`` = ``by``."""
    client.set_tag(run_id, record.TAG_KILLED_BY, by)
    client.set_terminated(run_id, record.KILLED)


STALE_CLOSER = "regbench: its process was gone when a later command used the experiment"


@contextmanager
def recorded_run(experiment_id: str, run_name: str, tags: dict[str, str]) -> Iterator[Any]:
    """Start a run and always end it with a true status: FINISHED only when the block
    completed, FAILED (error tags) on an exception, KILLED on KeyboardInterrupt, on an exception
    raised while an interrupt was requested (``processes.interrupt_requested``: a
    KeyboardInterrupt raised inside C code can surface as a SystemError), or when the process
    exits with the run still open. Signals are held while the run is being closed.
    Exceptions propagate after the run is closed."""
    atexit.unregister(_end_active_run_killed)  # registered once, after MLflow's
    atexit.register(_end_active_run_killed)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                           tags={**tags, **process_tags()})
    status = record.FAILED
    try:
        yield run
        status = record.FINISHED
    except KeyboardInterrupt:
        status = record.KILLED
        raise
    except BaseException as error:
        if interrupt_requested():  # the interrupt became this error where it landed (C code)
            status = record.KILLED
        with signals_held(), contextlib.suppress(Exception):  # the store may be what failed
            mlflow.set_tags({record.TAG_ERROR_TYPE: type(error).__name__,
                             record.TAG_ERROR_MESSAGE: str(error)[:4000]})
        raise
    finally:
        with signals_held():
            _close(run.info.run_id, status)


def _close(run_id: str, status: str) -> None:
    """Flush and end the run with ``status``; if the store no longer answers, StoreError in
    one line saying how the run will be closed."""
    from regbench.errors import StoreError
    from regbench.run.store import one_line

    try:
        mlflow.flush_async_logging()
        mlflow.end_run(status=status)
    except Exception as error:
        with contextlib.suppress(Exception):
            mlflow.end_run(status=status)  # leaves no active run in this process either way
        raise StoreError(f"run {run_id} could not be closed {status} ({one_line(error)}); once "
                         "the store answers, 'make runs ARGS=\"--stale --mark-killed\"' closes "
                         "it") from None


class MetricsLost(RuntimeError):
    """The store did not keep points the run logged, and did not take them when logged again;
    the message (one line) names them."""


def _missing_points(client, run_id: str,
                    epochs: Mapping[int, Mapping[str, float]]) -> list[tuple[str, int, float]]:
    """(metric, step, value) of every point in ``epochs`` (step -> metrics logged at it) that
    the store's history of the run lacks."""
    keys = sorted({key for logs in epochs.values() for key in logs})
    missing = []
    for key in keys:
        stored = {point.step for point in client.get_metric_history(run_id, key)}
        missing += [(key, step, logs[key]) for step, logs in sorted(epochs.items())
                    if key in logs and step not in stored]
    return missing


SQL_SESSION_LOGGER = "mlflow.store.db.utils"


class _FirstLineOnly(logging.Filter):
    """Cuts a record to the first line of its message and of its exception, without the
    traceback. A store error logged by MLflow's SQL session holds the SQL statement, its
    parameters and a traceback: 60-140 lines for one locked database, whose consequence
    regbench reports itself (an epoch the store refused is logged again, or the run fails naming
    it: ``complete_epoch_metrics``; any other store failure ends the command with one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        parts = [record.getMessage().strip().splitlines()[:1],
                 str(record.exc_info[1]).strip().splitlines()[:1] if record.exc_info else []]
        record.msg = " ".join(line for part in parts for line in part)
        record.args, record.exc_info, record.exc_text = None, None, None
        return True


logging.getLogger(SQL_SESSION_LOGGER).addFilter(_FirstLineOnly())


def complete_epoch_metrics(run_id: str, epochs: Mapping[int, Mapping[str, float]],
                           attempts: int = 3, pause: float = 5.0) -> None:
    """Make sure the store holds every point ``epochs`` (step -> metrics) lists for the run.

    An epoch the store refused while training (a database locked past its busy timeout:
    ``callbacks.EpochMetricsCallback`` says so in a line and goes on) is missing from it. So
    after training: flush MLflow's asynchronous queue (a no-op when nothing used it), read each
    metric's history back, and log what is missing again, synchronously, up to ``attempts``
    times, ``pause`` x attempt seconds apart. Raises
    MetricsLost naming the points still missing, so that the run ends FAILED, never FINISHED
    with data lost."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.flush_async_logging()
    client = MlflowClient()
    missing = _missing_points(client, run_id, epochs)
    for attempt in range(attempts):
        if not missing:
            return
        time.sleep(pause * attempt)
        now = int(time.time() * 1000)
        with contextlib.suppress(Exception):  # what did not land is read back below
            client.log_batch(run_id, metrics=[Metric(key, value, now, step)
                                              for key, step, value in missing])
        missing = _missing_points(client, run_id, epochs)
    if missing:
        lost: dict[str, list[int]] = {}
        for key, step, _ in missing:
            lost.setdefault(key, []).append(step)
        raise MetricsLost(f"the store lost {len(missing)} epoch metric point(s) and refused "
                          f"them {attempts} times: " + "; ".join(
                              f"{key} at steps {', '.join(map(str, steps))}"
                              for key, steps in lost.items()))


class _KerasFlavor:
    """``mlflow.keras`` for ``Model.log``, creating the model folder before saving into it.

    ``mlflow.keras.save_model`` writes the input example before it creates the folder, so
    ``mlflow.keras.log_model(..., input_example=...)`` fails with FileNotFoundError
    (mlflow/mlflow#16183, open in 3.17). Everything else is mlflow.keras' own.
    """

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path, **kwargs):
        import mlflow.keras

        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)


def log_keras_model(model, input_example) -> None:
    """Log the Keras model as the MLflow model ``record.MODEL_ARTIFACT`` of the active run (what
    ``mlflow.keras.log_model`` does), with a signature inferred from ``input_example``, the
    example itself, and the pinned TensorFlow, Keras and MLflow as its requirements."""
    import keras
    import tensorflow as tf
    from mlflow.models import Model, infer_signature

    signature = infer_signature(input_example, model.predict(input_example, verbose=0))
    # MLflow checks the example by serving it: a prediction with Keras' default verbosity, whose
    # progress bar (Keras' print to stdout) would follow a quiet run's output
    with contextlib.redirect_stdout(io.StringIO()):
        Model.log(
            artifact_path=None, name=record.MODEL_ARTIFACT, flavor=_KerasFlavor, model=model,
            signature=signature, input_example=input_example,
            pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}",
                              f"mlflow=={mlflow.__version__}"],
        )

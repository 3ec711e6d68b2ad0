"""``regbench ui`` and ``regbench serve RUN_ID``: MLflow's own UI and model server over
regbench's store (``$MLFLOW_TRACKING_URI``, else the project's SQLite store)."""

from __future__ import annotations

import os
import shutil
import sys

from regbench.cli import common
from regbench.locations import default_tracking_uri

HOST = "127.0.0.1"


def mlflow_command() -> str:
    """The ``mlflow`` command of this environment (beside this Python), else the PATH's."""
    beside = os.path.join(os.path.dirname(sys.executable), "mlflow")
    return beside if os.access(beside, os.X_OK) else (shutil.which("mlflow") or "mlflow")


def _replace_process(command: list[str]) -> int:
    """Become ``command`` (Ctrl-C and signals go straight to it)."""
    sys.stdout.flush()
    os.execvpe(command[0], command, {**os.environ,
                                     "MLFLOW_TRACKING_URI": default_tracking_uri()})
    return 0  # not reached


def ui(argv: list[str]) -> int:
    parser = common.ArgumentParser(prog="regbench ui", description="MLflow's UI over the store")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    return _replace_process([mlflow_command(), "ui", "--backend-store-uri", default_tracking_uri(),
                             "--host", HOST, "--port", str(args.port)])


def serve(argv: list[str]) -> int:
    parser = common.ArgumentParser(prog="regbench serve",
                                     description="serve a run's model on /invocations")
    parser.add_argument("run_id")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    return _replace_process([mlflow_command(), "models", "serve", "-m",
                             f"runs:/{args.run_id}/model", "--env-manager", "local", "--host",
                             HOST, "--port", str(args.port)])

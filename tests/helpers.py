"""What several test modules share: throwaway SQLite stores, subprocess runs of regbench's
commands, runs that have started training, free loopback ports, servers that come up, and tools
CI must have."""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
QUIET_TENSORFLOW = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"


def run_command(command: str, *args: str, cwd: Path, env: dict | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess:
    """``regbench command args`` (as ``python -m regbench``) in ``cwd``; stdout and stderr
    captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "regbench", command, *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **QUIET_TENSORFLOW, **(env or {})},
    )


def train(store: Path, *overrides: str, experiment: str = "regbench",
          tracking_uri: str | None = None) -> subprocess.CompletedProcess:
    """One ``regbench train`` into the SQLite store under ``store``; ``overrides``
    come last, so they win over the store's defaults."""
    return run_command(
        "train", f"mlflow.tracking_uri={tracking_uri or sqlite_uri(store)}",
        f"mlflow.experiment_name={experiment}", f"hydra.run.dir={store / 'outputs'}", *overrides,
        cwd=store,
    )


def runs(store: Path, experiment: str = "regbench"):
    """All runs of ``experiment`` in the store under ``store`` (a pandas DataFrame)."""
    import mlflow

    mlflow.set_tracking_uri(sqlite_uri(store))
    return mlflow.search_runs(experiment_names=[experiment])


def compose(*overrides: str, hydra: bool = False):
    """The config ``regbench train OVERRIDES`` would run (with Hydra's node if
    ``hydra``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import regbench.config.schema  # noqa: F401  (registers the schema config.yaml names)
    from regbench.locations import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides),
                             return_hydra_config=hydra)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not come up")


def api(base: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        base + path, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def require_tool(present: bool, tool: str) -> None:
    """Skip the test when a Debian tool is missing here, but fail in CI, which installs it."""
    if not present:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: .ci/run installs it with apt-get")
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")


def wait_for_training_runs(store: Path, count: int, timeout: float = 180) -> None:
    """Wait until ``count`` runs in the SQLite store under ``store`` have logged a loss (read
    with sqlite3, which a writer's lock does not block for long)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            with sqlite3.connect(store / "mlruns" / "mlflow.db") as connection:
                rows = connection.execute(
                    "SELECT COUNT(DISTINCT run_uuid) FROM metrics WHERE key = 'loss'").fetchone()
        except sqlite3.Error:
            continue
        if rows and rows[0] >= count:
            return
    raise AssertionError("the jobs did not start in time")


def record_run(experiment_id, arm, params, seed, accuracy, data_loss, with_reliability=True):
    """A FINISHED run as regbench train records one, with the test metrics given: tags (arm,
    today's code identity of its regularizer), params (``regularizer.<key>``, seed), final
    metrics, 3 epochs of curves, reliability bins."""
    from mlflow.tracking import MlflowClient

    from regbench import record
    from regbench.run import identity
    from regbench.run.metrics import reliability_bins

    client = MlflowClient()
    run = client.create_run(experiment_id, tags={"mlflow.runName": f"{arm}-{seed}",
                                                 record.TAG_ARM: arm,
                                                 **identity.of_option(params["name"]).tags()})
    for key, value in params.items():
        client.log_param(run.info.run_id, f"regularizer.{key}", value)
    client.log_param(run.info.run_id, "seed", seed)
    finals = {"test_accuracy": accuracy, "test_data_loss": data_loss,
              "test_total_loss": data_loss + 0.05, "test_ece": 0.01, "test_brier": 0.04,
              "epochs_trained": 3}
    for key, value in finals.items():
        client.log_metric(run.info.run_id, key, float(value))
    for epoch in range(3):
        for key in record.CURVE_METRICS:
            client.log_metric(run.info.run_id, key, 1.0 / (epoch + 1), step=epoch)
    if with_reliability:
        probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
        bins = reliability_bins(probs, np.array([0, 1, 1]))
        client.log_dict(run.info.run_id, bins.to_dict(), "reliability.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id

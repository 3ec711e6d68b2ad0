"""Shared helpers: a throwaway MLflow store per test session and a subprocess trainer."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"


def run_module(module: str, *args: str, cwd: Path, env: dict | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m module args`` in ``cwd``; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )


def train(store: Path, *overrides: str, experiment: str = "regbench",
          tracking_uri: str | None = None) -> subprocess.CompletedProcess:
    """One ``python -m regbench.train`` into the SQLite store under ``store``; ``overrides``
    come last, so they win over the store's defaults."""
    return run_module(
        "regbench.train", f"mlflow.tracking_uri={tracking_uri or sqlite_uri(store)}",
        f"mlflow.experiment_name={experiment}", f"hydra.run.dir={store / 'outputs'}", *overrides,
        cwd=store,
    )


def runs(store: Path, experiment: str = "regbench"):
    """All runs of ``experiment`` in the store under ``store`` (a pandas DataFrame)."""
    import mlflow

    mlflow.set_tracking_uri(sqlite_uri(store))
    return mlflow.search_runs(experiment_names=[experiment])


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory):
    """A store holding one 2-epoch synthetic run per regularizer none, l2 and custom."""
    store = tmp_path_factory.mktemp("smoke")
    for regularizer in ("none", "l2", "custom"):
        result = train(store, "data=synthetic", "trainer=smoke", "trainer.epochs=2",
                       f"regularizer={regularizer}")
        assert result.returncode == 0, result.stderr[-3000:]
    return store

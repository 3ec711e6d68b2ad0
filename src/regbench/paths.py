"""Where regbench keeps its files: every path absolute, none depending on the working directory.

The project root is the folder that holds ``conf/``, ``src/`` and ``mlruns/`` (the package is
installed editable with ``pip install -e .``); ``REGBENCH_HOME`` overrides it.
"""

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("REGBENCH_HOME", Path(__file__).resolve().parents[2]))
CONF_DIR = PROJECT_ROOT / "conf"
DATA_DIR = PROJECT_ROOT / "data"
MLRUNS_DIR = PROJECT_ROOT / "mlruns"
REPORTS_DIR = PROJECT_ROOT / "reports"


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else the project's SQLite store ``mlruns/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{MLRUNS_DIR / 'mlflow.db'}"

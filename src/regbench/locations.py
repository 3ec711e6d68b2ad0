"""Where regbench keeps its files: every path absolute, none depending on the working directory
unless regbench is installed outside a checkout.

The configs (``conf/``) are package data, found with ``importlib.resources``. The project root,
which holds ``data/``, ``mlruns/`` and ``reports/``, is ``$REGBENCH_HOME`` when set; else the
checkout the package was installed from editable (the folder above ``src/`` that holds
``pyproject.toml``); else, for a package installed into site-packages, the current directory.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

PACKAGE_DIR = Path(str(files("regbench")))
CONF_DIR = PACKAGE_DIR / "conf"


def _project_root() -> Path:
    if home := os.environ.get("REGBENCH_HOME"):
        return Path(home).absolute()
    checkout = PACKAGE_DIR.parents[1]
    if PACKAGE_DIR.parent.name == "src" and (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.cwd()


PROJECT_ROOT = _project_root()
DATA_DIR = PROJECT_ROOT / "data"
MLRUNS_DIR = PROJECT_ROOT / "mlruns"
REPORTS_DIR = PROJECT_ROOT / "reports"


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else the project's SQLite store ``mlruns/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{MLRUNS_DIR / 'mlflow.db'}"


def unwritable_folder(path: Path) -> str | None:
    """Why folder ``path`` cannot be used or created (``<existing> is not a folder``, ``... is
    not writable``), or None when it can; nothing is created."""
    folder = Path(path).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def config_groups() -> tuple[str, ...]:
    """The config groups: the folders of conf/ (Hydra's own ``hydra/`` aside)."""
    return tuple(sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra"))


@contextmanager
def file_lock(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (created if missing) for the block: processes
    of this host that take the same lock run such blocks one at a time."""
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

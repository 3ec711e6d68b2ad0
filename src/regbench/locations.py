"""Where regbench keeps its files: every path absolute, none depending on the working directory
unless regbench is installed outside a checkout.

The configs (``conf/``) are package data, found with ``importlib.resources``. The project root,
which holds ``data/``, ``mlruns/`` and ``reports/``, is ``$REGBENCH_HOME`` when set; else the
checkout the package was installed from editable (the folder above ``src/`` that holds
``pyproject.toml``); else, for a package installed into site-packages, the current directory.
A report's files are written whole or not at all (``ReportFiles``).
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

from regbench.processes import signals_held

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
def file_lock(lock_file: Path, waiting: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (created if missing) for the block: processes
    of this host that take the same lock run such blocks one at a time. ``waiting``: a line
    printed to stderr when the lock is held by another process, before waiting for it."""
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ReportFiles:
    """The files of one report in ``folder``, written whole or not at all.

    ``with ReportFiles(folder, owned) as stage:`` the block writes each file to ``stage(name)``,
    a temporary name beside ``folder/name`` (same suffix, so that a plot's format is still
    read from it). When the block completes, every staged file replaces its target
    (``os.replace``, atomic per file) with SIGINT and SIGTERM held until the last is in place,
    and a file of ``owned`` (the report's names) that this writing did not stage is removed,
    so no file of an earlier report is left beside the new ones. When the block raises, the
    staged files are removed and the earlier report stays as it was. ``written``: the final
    paths, in staging order."""

    def __init__(self, folder: Path, owned: tuple[str, ...] = ()):
        self.folder, self.owned = folder, owned
        self.token = os.urandom(4).hex()
        self.staged: dict[Path, Path] = {}

    def __call__(self, name: str) -> Path:
        target = self.folder / name
        temporary = target.with_name(f".{target.stem}.{self.token}{target.suffix}")
        self.staged[target] = temporary
        return temporary

    @property
    def written(self) -> list[Path]:
        return list(self.staged)

    def __enter__(self) -> ReportFiles:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            for temporary in self.staged.values():
                temporary.unlink(missing_ok=True)
            return
        with signals_held():
            for target, temporary in self.staged.items():
                os.replace(temporary, target)
            for name in self.owned:
                if self.folder / name not in self.staged:
                    (self.folder / name).unlink(missing_ok=True)


def write_whole(path: Path, text: str) -> Path:
    """Write a one-file report whole or not at all (``ReportFiles``)."""
    with ReportFiles(path.parent) as stage:
        stage(path.name).write_text(text)
    return path

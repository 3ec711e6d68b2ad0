"""Fixtures shared by several test modules (helpers live in helpers.py)."""

import os
import signal

import pytest

from helpers import compose, sqlite_uri

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_configure(config):
    """Ctrl-C is part of what the tests check, in this process and in the ones it starts. A
    shell that starts pytest in the background (``make test &``) ignores SIGINT, Python then
    installs no KeyboardInterrupt handler, and every child inherits the ignoring: give this
    process Python's handler back (its children then start with the default)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory):
    """A store holding one 2-epoch synthetic run per regularizer none, l2 and custom, trained
    in this process as ``regbench train`` trains each (``train_and_evaluate``)."""
    from regbench.processes import import_tensorflow_quietly

    import_tensorflow_quietly()
    from regbench.run.training import train_and_evaluate

    store = tmp_path_factory.mktemp("smoke")
    for regularizer in ("none", "l2", "custom"):
        train_and_evaluate(compose("data=synthetic", "trainer=smoke", "trainer.epochs=2",
                                   f"regularizer={regularizer}", "mlflow.experiment_name=regbench",
                                   f"mlflow.tracking_uri={sqlite_uri(store)}"))
    return store


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """``plugin(source)``: write ``source`` (or take an existing file's path) as the Python file
    REGBENCH_PLUGINS names for this test; the registry loads it anew, and forgets what it
    registered when the test ends (its options and Hydra's ConfigStore group are swapped for
    copies that monkeypatch restores)."""
    from pathlib import Path

    from hydra.core.config_store import ConfigStore

    from regbench.config import overrides, registry

    monkeypatch.setattr(registry, "_OPTIONS", dict(registry._OPTIONS))
    repo = ConfigStore.instance().repo
    monkeypatch.setitem(repo, registry.GROUP, dict(repo[registry.GROUP]))
    caches = (registry.load, overrides._check_node)

    def use(source: str | Path, name: str = "mine.py") -> Path:
        path = source if isinstance(source, Path) else tmp_path / name
        if not isinstance(source, Path):
            path.write_text(source)
        monkeypatch.setenv(registry.PLUGINS_ENV, str(path))
        for cache in caches:
            cache.cache_clear()
        return path

    yield use
    for cache in caches:
        cache.cache_clear()


def pytest_collection_modifyitems(items):
    """The tests marked ``long`` first, so that no worker starts one when the others are done."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)

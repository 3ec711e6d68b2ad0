"""Fixtures shared by several test modules (helpers live in helpers.py)."""

import os

import pytest

from helpers import train

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory):
    """A store holding one 2-epoch synthetic run per regularizer none, l2 and custom."""
    store = tmp_path_factory.mktemp("smoke")
    for regularizer in ("none", "l2", "custom"):
        result = train(store, "data=synthetic", "trainer=smoke", "trainer.epochs=2",
                       f"regularizer={regularizer}")
        assert result.returncode == 0, result.stderr[-3000:]
    return store

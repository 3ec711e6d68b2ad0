"""How many examples a ``data`` config gives each split: arithmetic on the config alone, so a
config can be checked (``validation``) before any data is read (``regbench.run.data``
splits the arrays by the same rule)."""

from __future__ import annotations

TRAINING_POOL = {"mnist": 60_000, "fashion_mnist": 60_000}  # synthetic: its n_train


def pool_size(data_cfg) -> int:
    """How many training examples the ``data`` config's dataset has (before ``limit``)."""
    return data_cfg.n_train if data_cfg.name == "synthetic" else TRAINING_POOL[data_cfg.name]


def split_sizes(pool: int, val_split: float, limit: int | None,
                validate_on: str) -> tuple[int, int]:
    """(training, validation) examples of a pool of ``pool``: capped at ``limit``, then
    round(n * val_split) held out (none when validating on test)."""
    n = pool if limit is None else min(pool, limit)
    n_val = 0 if validate_on == "test" else int(round(n * val_split))
    return n - n_val, n_val

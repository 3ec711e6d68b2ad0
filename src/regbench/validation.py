"""What the schema's types cannot say: ranges and allowed names, checked on a composed config.

``validate(cfg)`` raises ``ConfigError`` with one line ``<key>=<value>: <what is allowed>``.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig

from regbench.record import STRENGTH_KEYS
from regbench.schema import ALLOWED


class ConfigError(ValueError):
    """A configuration value is not allowed; the message is one line naming the key."""


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ``ConfigError("<key>=<value>: <allowed>")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value}: {allowed}")


def _check_strength(regularizer: DictConfig, key: str) -> None:
    value = regularizer.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and value >= 0
    require(ok, f"regularizer.{key}", value, "must be a finite number >= 0")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line, naming the key) for any value the schema's types allow
    but regbench does not."""
    for key, allowed in ALLOWED.items():
        group, name = key.split(".")
        value = str(cfg[group][name])
        require(value in allowed, key, value, f"allowed are {', '.join(allowed)}")
    data, model, trainer = cfg.data, cfg.model, cfg.trainer
    require(data.limit is None or data.limit >= 10, "data.limit", data.limit,
            "must be null (all) or an integer >= 10")
    require(0.0 < data.val_split < 1.0, "data.val_split", data.val_split,
            "must be between 0 and 1, exclusive")
    require(len(model.units) >= 1 and all(u >= 1 for u in model.units), "model.units",
            list(model.units), "must be a non-empty list of integers >= 1")
    require(len(model.dropout) == len(model.units), "model.dropout", list(model.dropout),
            f"must have one rate per hidden layer ({len(model.units)})")
    require(all(0.0 <= r < 1.0 for r in model.dropout), "model.dropout", list(model.dropout),
            "rates must be in [0, 1)")
    require(trainer.epochs >= 1, "trainer.epochs", trainer.epochs, "must be an integer >= 1")
    require(trainer.batch_size >= 1, "trainer.batch_size", trainer.batch_size,
            "must be an integer >= 1")
    require(trainer.learning_rate > 0, "trainer.learning_rate", trainer.learning_rate,
            "must be > 0")
    require(0.0 < trainer.lr_factor < 1.0, "trainer.lr_factor", trainer.lr_factor,
            "must be between 0 and 1, exclusive")
    require(trainer.threads is None or trainer.threads >= 1, "trainer.threads", trainer.threads,
            "must be null (automatic) or an integer >= 1")
    require(trainer.steps_per_execution >= 1, "trainer.steps_per_execution",
            trainer.steps_per_execution, "must be an integer >= 1")
    regularizer = cfg.regularizer
    require("name" in regularizer and "kernel" in regularizer, "regularizer", regularizer.keys(),
            "needs the keys name and kernel (see conf/regularizer/)")
    for key in STRENGTH_KEYS:
        if key in regularizer:
            _check_strength(regularizer, key)

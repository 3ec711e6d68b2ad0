"""What the schema's types cannot say, checked on a composed config before anything runs.

``validate(cfg)`` raises ``ConfigError`` with one line ``<key>=<value>: <what is allowed>`` for:
keys outside the schema (also those added with ``+``); a regularizer whose keys are not exactly
its option's (a preset's leftover strength included) or whose kernel names another class than
its option's (``registry``); names, ranges and finiteness; splits that would be empty; a
batch larger than the training set; a model too large for this machine's memory; an
experiment name that is blank or too long for the store.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from regbench.config import registry, schema
from regbench.config.numbers import finite_number
from regbench.config.splits import pool_size, split_sizes
from regbench.errors import ConfigError

BYTES_PER_WEIGHT = 16  # float32 weight, its gradient and Adam's two moments


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ``ConfigError("<key>=<value>: <allowed>")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value}: {allowed}")


def _check_schema_keys(cfg: DictConfig) -> None:
    nodes = {"": schema.RegbenchConfig, "data.": schema.DataConfig,
             "model.": schema.ModelConfig, "trainer.": schema.TrainerConfig,
             "mlflow.": schema.MlflowConfig}
    for prefix, node in nodes.items():
        fields = [field.name for field in dataclasses.fields(node)]
        keys = cfg.keys() if not prefix else cfg[prefix[:-1]].keys()
        for key in keys:
            if key not in fields and key != "hydra":
                raise ConfigError(f"{prefix}{key}: not a key of the config; the keys of "
                                  f"{prefix[:-1] or 'the top level'} are {', '.join(fields)}")


def _check_keys(node: Any, expected: dict, key: str, option: str) -> None:
    """``node``'s keys are exactly ``expected``'s (recursively), in one line otherwise."""
    actual = set(node.keys()) if isinstance(node, DictConfig) else set()
    for extra in sorted(actual - set(expected)):
        raise ConfigError(f"{key}.{extra}: not a key of regularizer option {option}; its keys "
                          f"are {', '.join(expected)}")
    for missing in sorted(set(expected) - actual):
        raise ConfigError(f"{key}.{missing}: missing; regularizer option {option} needs "
                          f"{', '.join(expected)}")
    for name, subtree in expected.items():
        if isinstance(subtree, dict):
            _check_keys(node[name], subtree, f"{key}.{name}", option)


def _check_regularizer(cfg: DictConfig) -> None:
    regularizer = cfg.regularizer
    name = regularizer.get("name")
    option = registry.get(str(name))
    _check_keys(regularizer, schema.regularizer_keys(option.name), "regularizer", name)
    for key, value in regularizer.items():
        if key not in ("name", *registry.ACTS_ON):
            require(finite_number(value) and value >= 0, f"regularizer.{key}", value,
                    "must be a finite number >= 0")
    kernel = registry.class_node(option, regularizer)
    registry.check_target(option, kernel)
    if kernel is None:
        return
    for key, value in OmegaConf.to_container(kernel, resolve=True).items():
        require(isinstance(value, (int, float, str, bool)),
                f"regularizer.{option.acts_on}.{key}", value, "must be a number or a string")
    if option.builtin:  # what the built-in classes' constructors would refuse, said by key
        require(regularizer.get("l1_ratio", 0) <= 1, "regularizer.l1_ratio",
                regularizer.get("l1_ratio"), "must be in [0, 1]")
        require(kernel.get("mode", "rows") in ("rows", "columns"), "regularizer.kernel.mode",
                kernel.get("mode"), "allowed are rows, columns")


def _check_data(cfg: DictConfig) -> int:
    """Check the data keys; return the number of training examples the split leaves."""

    data = cfg.data
    require(data.limit is None or data.limit >= 10, "data.limit", data.limit,
            "must be null (all) or an integer >= 10")
    require(0.0 < data.val_split < 1.0, "data.val_split", data.val_split,
            "must be between 0 and 1, exclusive")
    require(schema.SEED_RANGE[0] <= data.split_seed <= schema.SEED_RANGE[1], "data.split_seed",
            data.split_seed, f"must be an integer in [0, {schema.SEED_RANGE[1]}]")
    pool = pool_size(data)
    n_train, n_val = split_sizes(pool, data.val_split, data.limit, data.validate_on)
    require(n_val >= 1 or data.validate_on == "test", "data.val_split", data.val_split,
            f"holds out no example of the {pool} used; raise it or data.limit")
    require(n_train >= 1, "data.val_split", data.val_split,
            f"leaves no training example of the {pool} used; lower it or raise data.limit")
    return n_train


def _check_model(model: DictConfig) -> None:
    require(len(model.units) >= 1 and all(u >= 1 for u in model.units), "model.units",
            list(model.units), "must be a non-empty list of integers >= 1")
    require(len(model.dropout) == len(model.units), "model.dropout", list(model.dropout),
            f"must have one rate per hidden layer ({len(model.units)})")
    require(all(0.0 <= r < 1.0 for r in model.dropout), "model.dropout", list(model.dropout),
            "rates must be in [0, 1)")
    sizes = [model.input_dim, *model.units, model.num_classes]
    weights = sum(a * b + b for a, b in itertools.pairwise(sizes))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    require(weights * BYTES_PER_WEIGHT <= memory / 2, "model.units", list(model.units),
            f"{weights:.3g} weights need about {weights * BYTES_PER_WEIGHT / 2**30:.0f} GiB "
            f"with gradients and optimizer state; this machine has {memory / 2**30:.0f} GiB")


def _check_trainer(trainer: DictConfig, n_train: int) -> None:
    require(trainer.epochs >= 1, "trainer.epochs", trainer.epochs, "must be an integer >= 1")
    require(1 <= trainer.batch_size <= n_train, "trainer.batch_size", trainer.batch_size,
            f"must be an integer from 1 to the {n_train} training examples")
    require(finite_number(trainer.learning_rate) and trainer.learning_rate > 0,
            "trainer.learning_rate", trainer.learning_rate, "must be a finite number > 0")
    require(0.0 < trainer.lr_factor < 1.0, "trainer.lr_factor", trainer.lr_factor,
            "must be between 0 and 1, exclusive")
    for key in ("lr_patience", "early_stopping_patience"):
        require(trainer[key] >= 0, f"trainer.{key}", trainer[key], "must be an integer >= 0")
    require(trainer.threads is None or trainer.threads >= 1, "trainer.threads", trainer.threads,
            "must be null (automatic) or an integer >= 1")
    require(trainer.steps_per_execution >= 1, "trainer.steps_per_execution",
            trainer.steps_per_execution, "must be an integer >= 1")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line, naming the key) for any value the schema's types allow
    but regbench does not."""
    _check_schema_keys(cfg)
    for key, allowed in schema.ALLOWED.items():
        group, name = key.split(".")
        value = str(cfg[group][name])
        require(value in allowed, key, value, f"allowed are {', '.join(allowed)}")
    require(schema.SEED_RANGE[0] <= cfg.seed <= schema.SEED_RANGE[1], "seed", cfg.seed,
            f"must be an integer in [0, {schema.SEED_RANGE[1]}]")
    name = cfg.mlflow.experiment_name
    require(0 < len(name.strip()) and len(name) <= schema.EXPERIMENT_NAME_MAX,
            "mlflow.experiment_name", name if len(name) <= 40 else f"{name[:40]}...",
            f"must be a name of 1 to {schema.EXPERIMENT_NAME_MAX} characters, not blank")
    _check_regularizer(cfg)
    _check_model(cfg.model)
    _check_trainer(cfg.trainer, _check_data(cfg))

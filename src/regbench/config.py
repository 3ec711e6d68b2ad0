"""The configuration schema and its checks: bad input fails here, in one line, before any run.

``RegbenchConfig`` is registered in Hydra's ConfigStore as ``regbench_schema`` and is the first
entry of ``conf/config.yaml``'s defaults, so Hydra enforces key names and types while composing.
``validate`` adds what types cannot say (ranges, allowed names). ``check_overrides`` composes
every job a command line asks for, before Hydra runs it, and turns any failure into one line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from regbench.paths import CONF_DIR

GROUPS = ("data", "model", "regularizer", "trainer", "experiment", "hparams_search")
STRENGTH_KEYS = ("weight", "l1", "l2")


class ConfigError(ValueError):
    """A configuration value is not allowed; the message is one line naming the key."""


@dataclass
class DataConfig:
    name: str = MISSING
    limit: int | None = None
    val_split: float = 0.1
    validate_on: str = "val"
    split_seed: int = MISSING
    dir: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    noise: float | None = None
    generator_seed: int | None = None


@dataclass
class ModelConfig:
    name: str = MISSING
    input_dim: int = 784
    num_classes: int = 10
    units: list[int] = MISSING
    activation: str = MISSING
    batch_norm: bool = MISSING
    dropout: list[float] = MISSING


@dataclass
class TrainerConfig:
    name: str = MISSING
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 128
    epochs: int = 50
    monitor: str = "val_accuracy"
    lr_factor: float = 0.5
    lr_patience: int = 2
    early_stopping_patience: int = 5
    verbose: str = "auto"
    steps_per_execution: int = 1
    jit_compile: bool = False
    deterministic: bool = False
    threads: int | None = None


@dataclass
class MlflowConfig:
    tracking_uri: str | None = None
    experiment_name: str = "regbench"


@dataclass
class RegbenchConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularizer: dict[str, Any] = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    seed: int = 0


ConfigStore.instance().store(name="regbench_schema", node=RegbenchConfig)

_ALLOWED = {
    "data.name": ("mnist", "fashion_mnist", "synthetic"),
    "data.validate_on": ("val", "test"),
    "model.activation": ("relu", "swish", "gelu", "tanh", "elu", "sigmoid"),
    "trainer.optimizer": ("adam", "sgd", "rmsprop", "adamw"),
    "trainer.monitor": ("val_accuracy", "val_loss", "val_data_loss"),
    "trainer.verbose": ("auto", "0", "1", "2"),
}


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value}: {allowed}")


def _check_strength(regularizer: DictConfig, key: str) -> None:
    value = regularizer.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and value >= 0
    _require(ok, f"regularizer.{key}", value, "must be a finite number >= 0")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line, naming the key) for any value the schema's types allow
    but regbench does not."""
    for key, allowed in _ALLOWED.items():
        group, name = key.split(".")
        value = str(cfg[group][name])
        _require(value in allowed, key, value, f"allowed are {', '.join(allowed)}")
    data, model, trainer = cfg.data, cfg.model, cfg.trainer
    _require(data.limit is None or data.limit >= 10, "data.limit", data.limit,
             "must be null (all) or an integer >= 10")
    _require(0.0 < data.val_split < 1.0, "data.val_split", data.val_split,
             "must be between 0 and 1, exclusive")
    _require(len(model.units) >= 1 and all(u >= 1 for u in model.units), "model.units",
             list(model.units), "must be a non-empty list of integers >= 1")
    _require(len(model.dropout) == len(model.units), "model.dropout", list(model.dropout),
             f"must have one rate per hidden layer ({len(model.units)})")
    _require(all(0.0 <= r < 1.0 for r in model.dropout), "model.dropout", list(model.dropout),
             "rates must be in [0, 1)")
    _require(trainer.epochs >= 1, "trainer.epochs", trainer.epochs, "must be an integer >= 1")
    _require(trainer.batch_size >= 1, "trainer.batch_size", trainer.batch_size,
             "must be an integer >= 1")
    _require(trainer.learning_rate > 0, "trainer.learning_rate", trainer.learning_rate,
             "must be > 0")
    _require(0.0 < trainer.lr_factor < 1.0, "trainer.lr_factor", trainer.lr_factor,
             "must be between 0 and 1, exclusive")
    _require(trainer.threads is None or trainer.threads >= 1, "trainer.threads", trainer.threads,
             "must be null (automatic) or an integer >= 1")
    _require(trainer.steps_per_execution >= 1, "trainer.steps_per_execution",
             trainer.steps_per_execution, "must be an integer >= 1")
    regularizer = cfg.regularizer
    _require("name" in regularizer and "kernel" in regularizer, "regularizer", regularizer.keys(),
             "needs the keys name and kernel (see conf/regularizer/)")
    for key in STRENGTH_KEYS:
        if key in regularizer:
            _check_strength(regularizer, key)


def arm_label(regularizer: Any) -> str:
    """The arm a regularizer config belongs to: its name and strengths, e.g. ``custom-0.0001``,
    ``l1_l2-0.001-0.001``, ``none``. Works on a config node or on a run's string params."""
    strengths = [f"{float(regularizer[key]):g}" for key in STRENGTH_KEYS
                 if regularizer.get(key) not in (None, "None")]
    return "-".join([str(regularizer["name"]), *strengths])


def group_options(group: str) -> list[str]:
    """The option names of a config group: the YAML files in conf/<group>/."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def _one_line(error: Exception) -> str:
    """Hydra's message folded to one line, with the first line of its cause (the reason)."""
    message = " ".join(str(error).split())
    cause = error.__cause__
    return f"{message}: {str(cause).splitlines()[0]}" if cause and str(cause) else message


def _check_group_choices(parsed) -> None:
    for override in parsed:
        group = override.key_or_group.lstrip("+~")
        if group not in GROUPS or override.value() is None:
            continue
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [
            override.get_value_element_as_str()]
        options = group_options(group)
        for value in values:
            _require(value in options, group, value, f"unknown option; allowed are "
                     f"{', '.join(options)}")


def check_output_dir(path: str, key: str) -> None:
    """Raise ConfigError unless folder ``path`` exists or can be created (no side effects)."""
    folder = Path(path).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={path}: cannot be created, {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path}: cannot be created, {existing} is not writable")


def check_overrides(arguments: list[str]) -> None:
    """Compose and validate every job that ``python -m regbench.train ARGUMENTS`` would run.

    Raises ConfigError with one line for an unknown group option, an unknown key, a value of the
    wrong type or out of range, or an output folder that cannot be created. Hydra's own flags
    are left to Hydra; sweeps that only a search plugin can expand (``interval(...)``) are
    checked by the job.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    multirun = "-m" in arguments or "--multirun" in arguments
    overrides = [a for a in arguments if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as error:
        raise ConfigError(_one_line(error)) from None
    _check_group_choices(parsed)
    try:
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:
        jobs = [[o.input_line for o in parsed if not o.is_sweep_override()]]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for job in jobs:
            try:
                cfg = compose(config_name="config", overrides=job, return_hydra_config=True)
            except Exception as error:
                raise ConfigError(_one_line(error)) from None
            validate(cfg)
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        check_output_dir(OmegaConf.select(cfg, key), key)

"""The configuration schema: key names and types, and the names each key allows.

``RegbenchConfig`` is registered in Hydra's ConfigStore as ``regbench_schema``, the first entry
of ``conf/config.yaml``'s defaults, so Hydra refuses unknown keys and wrong types while it
composes. Every default lives in the YAML files of ``conf/`` only, and those of the regularizer
options in ``regbench.config.registry``, which importing this module loads (it stores each option's
node in the ConfigStore): a field they set is ``MISSING`` here (a test checks that no default
is written twice); ``None`` marks an optional key that only some options set (the synthetic
data's ``n_train``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from regbench.config import registry
from regbench.locations import CONF_DIR
from regbench.record import MONITORED

SCHEMA_NAME = "regbench_schema"

DATASETS = ("mnist", "fashion_mnist", "synthetic")
ACTIVATIONS = ("relu", "swish", "gelu", "tanh", "elu", "sigmoid")
OPTIMIZERS = ("adam", "adamw", "fused_adam", "rmsprop", "sgd")  # models.make_optimizer's names
VERBOSITY = ("auto", "0", "1", "2")
VALIDATE_ON = ("val", "test")

SEED_RANGE = (0, 2**32 - 1)  # what numpy's and TensorFlow's seeding accept
# the width of the name column of MLflow's SQL experiments table (PostgreSQL enforces it)
EXPERIMENT_NAME_MAX = 256

ALLOWED = {  # key -> the values it allows
    "data.name": DATASETS,
    "data.validate_on": VALIDATE_ON,
    "model.activation": ACTIVATIONS,
    "trainer.optimizer": OPTIMIZERS,
    "trainer.monitor": MONITORED,
    "trainer.verbose": VERBOSITY,
}


@dataclass
class DataConfig:
    name: str = MISSING
    limit: int | None = MISSING
    val_split: float = MISSING
    validate_on: str = MISSING
    split_seed: int = MISSING
    dir: str | None = MISSING
    n_train: int | None = None
    n_test: int | None = None
    noise: float | None = None
    generator_seed: int | None = None


@dataclass
class ModelConfig:
    name: str = MISSING
    input_dim: int = MISSING
    num_classes: int = MISSING
    units: list[int] = MISSING
    activation: str = MISSING
    batch_norm: bool = MISSING
    dropout: list[float] = MISSING


@dataclass
class TrainerConfig:
    name: str = MISSING
    optimizer: str = MISSING
    learning_rate: float = MISSING
    batch_size: int = MISSING
    epochs: int = MISSING
    monitor: str = MISSING
    lr_factor: float = MISSING
    lr_patience: int = MISSING
    early_stopping_patience: int = MISSING
    restore_best_weights: bool = MISSING
    verbose: str = MISSING
    steps_per_execution: int = MISSING
    jit_compile: bool = MISSING
    deterministic: bool = MISSING
    threads: int | None = MISSING


@dataclass
class MlflowConfig:
    tracking_uri: str | None = MISSING
    experiment_name: str = MISSING


@dataclass
class MarginsConfig:
    """The equivalence margins of a study's comparisons, per tested metric (result-neutral:
    they judge runs, they do not change them)."""

    test_accuracy: float = MISSING
    test_data_loss: float = MISSING


@dataclass
class RegbenchConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularizer: dict[str, Any] = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    margins: MarginsConfig = field(default_factory=MarginsConfig)
    seed: int = MISSING
    rerun: bool = MISSING
    reuse_stale: bool = MISSING


ConfigStore.instance().store(name=SCHEMA_NAME, node=RegbenchConfig)


def group_options(group: str) -> list[str]:
    """The option names of a config group: the YAML files in conf/<group>/ and, for the
    regularizer group, every registered option (``registry``, the user's included)."""
    files = {path.stem for path in (CONF_DIR / group).glob("*.yaml")}
    return sorted(files | set(registry.names()) if group == registry.GROUP else files)


def regularizer_keys(name: str) -> dict[str, Any]:
    """The keys of regularizer option ``name`` as a tree of key -> None, or a subtree for a
    node (``kernel``). Raises ConfigError when there is no such option."""
    def keys(node):
        return {key: keys(value) if isinstance(value, dict) else None
                for key, value in node.items()}

    return keys(registry.get(name).node())


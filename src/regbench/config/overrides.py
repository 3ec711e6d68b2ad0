"""A command line's overrides checked before Hydra runs anything: every job it would run is
composed and validated, and any failure becomes one line (``ConfigError``).

Sweeps are expanded as Hydra's basic sweeper expands them (the cartesian product of every
discrete sweep, a later override of a key replacing an earlier one), through the public override
parser; ``interval(...)`` sweeps, which only a search plugin can sample, are checked by the job.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from regbench.config.schema import group_options
from regbench.config.validation import require, validate
from regbench.errors import ConfigError
from regbench.locations import CONF_DIR, config_groups, unwritable_folder

HYDRA_HELP_FLAGS = {"-h", "--help", "--hydra-help", "-sc", "--shell-completion"}
# Hydra's flags that show what a command would run instead of running it: checked like a run
HYDRA_PREVIEW_FLAGS = {"-c", "--cfg", "-i", "--info", "-r", "--resolve"}


def override_words(arguments: list[str]) -> list[str]:
    """The Hydra overrides (``key=value``) among a ``regbench train`` command line's words."""
    return [a for a in arguments if "=" in a and not a.startswith("-")]


def is_multirun(arguments: list[str]) -> bool:
    """Whether a ``regbench train`` command line asks for a multirun."""
    return "-m" in arguments or "--multirun" in arguments


def _one_line(error: Exception) -> str:
    """Hydra's message folded to one line, with the first line of its cause (the reason)."""
    message = " ".join(str(error).split())
    cause = error.__cause__
    return f"{message}: {str(cause).splitlines()[0]}" if cause and str(cause) else message


def _check_group_choices(parsed) -> None:
    groups = config_groups()
    for override in parsed:
        group = override.key_or_group.lstrip("+~")
        if group not in groups or override.value() is None:
            continue
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [
            override.get_value_element_as_str()]
        options = group_options(group)
        for value in values:
            require(value in options, group, value, f"unknown option; allowed are "
                    f"{', '.join(options)}")


def expand_jobs(parsed) -> list[list[str]]:
    """The override list of each job a multirun of ``parsed`` overrides runs."""
    by_key: dict[str, list[str]] = {}
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            by_key[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            by_key[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            by_key.pop(key, None)  # an interval: sampled by a search plugin, checked by the job
    return [list(job) for job in itertools.product(*by_key.values())]


def check_output_dir(path: str, key: str) -> None:
    """Raise ConfigError unless folder ``path`` exists or can be created (no side effects)."""
    reason = unwritable_folder(Path(path))
    if reason:
        raise ConfigError(f"{key}={path}: cannot be created, {reason}")


def check_users_regularizer(regularizer_cfg) -> None:
    """Build a registered option that is not a built-in and run it through the registry's
    checks (``registry.check``), once per distinct node: a class of the user's is refused
    before any job trains. The built-ins, checked by the tests, are left to the run, so that a
    preview need not import TensorFlow."""
    from regbench.config import registry

    if not registry.get(str(regularizer_cfg.name)).builtin:
        _check_node(OmegaConf.to_yaml(regularizer_cfg, resolve=True))


@functools.cache
def _check_node(node_yaml: str) -> None:
    from regbench.config import registry

    node = OmegaConf.create(node_yaml)
    registry.check(str(node.name), registry.build(node))


def composed_jobs(arguments: list[str]) -> tuple[list[DictConfig], bool]:
    """Compose and validate every job that ``regbench train ARGUMENTS`` would run:
    the command line's sweeps and, in a multirun, a preset's grid (``hydra.sweeper.params``,
    which the command line overrides key by key, as Hydra's basic sweeper does). Return each
    job's config (Hydra's node included), and whether a search plugin picks the jobs instead
    (then the configs are those of the discrete sweeps alone).

    Raises ConfigError with one line for an unknown group option, an unknown key, or a value of
    the wrong type or out of range. Hydra's own flags are left to Hydra.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    multirun = is_multirun(arguments)
    overrides = override_words(arguments)
    parser = OverridesParser.create()
    for text in overrides:  # a malformed one named by itself, before Hydra reads them together
        try:
            parser.parse_overrides([text])
        except Exception as error:
            reason = _one_line(error).split(" See https://hydra.cc")[0]
            raise ConfigError(f"{text}: not an override Hydra can read ({reason})") from None
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            parsed = parser.parse_overrides(overrides)
            _check_group_choices(parsed)
            base = compose(config_name="config", return_hydra_config=True, overrides=[
                o.input_line for o in parsed if not o.is_sweep_override()])
            grid = OmegaConf.select(base, "hydra.sweeper.params") if multirun else None
            preset = [f"{key}={value}" for key, value in (grid or {}).items()]
            parsed = parser.parse_overrides(preset + overrides) if preset else parsed
        except ConfigError:
            raise
        except Exception as error:
            raise ConfigError(_one_line(error)) from None
        configs = []
        for job in expand_jobs(parsed):
            try:
                cfg = compose(config_name="config", overrides=job, return_hydra_config=True)
            except Exception as error:
                raise ConfigError(_one_line(error)) from None
            validate(cfg)
            check_users_regularizer(cfg.regularizer)
            configs.append(cfg)
    searched = any(o.is_sweep_override() and not o.is_discrete_sweep() for o in parsed) or (
        not str(base.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"))
    return configs, searched


def check_overrides(arguments: list[str]) -> tuple[str, int | None]:
    """``composed_jobs``' checks, and that the output folder (``hydra.sweep.dir`` of a
    multirun, else ``hydra.run.dir``) exists or can be created; return that folder and the
    number of jobs (None when a search plugin decides it). Every failure is a ConfigError of
    one line."""
    configs, searched = composed_jobs(arguments)
    key = "hydra.sweep.dir" if is_multirun(arguments) else "hydra.run.dir"
    output_dir = str(OmegaConf.select(configs[-1], key))
    check_output_dir(output_dir, key)
    return output_dir, None if searched else len(configs)


def task_config(cfg: DictConfig) -> DictConfig:
    """A composed job's config as its task function receives it: Hydra's node removed."""
    task = cfg.copy()
    with open_dict(task):
        del task["hydra"]
    return task

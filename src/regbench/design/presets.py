"""The facts of the study presets, in one place: the hand-written strength grids and the presets
that pin them, the selection seeds and the fresh seeds of a tuned comparison, the control arm,
and which experiment presets a path trains."""

from __future__ import annotations

import hashlib
import json

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from regbench.analysis.query import SEED_PARAMS
from regbench.config import registry
from regbench.config.schema import group_options
from regbench.locations import CONF_DIR
from regbench.run.tracking import flatten

PUBLISHED_GRIDS = {  # option -> regularizer.weight values, written by hand before calibration
    "l1": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    "l2": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    "l1_l2": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    "orthogonal": (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
    "custom": (1e-2, 1.0, 1e2, 1e4, 1e5, 1e6),
    "custom_columns": (1e-2, 1.0, 1e2, 1e4, 1e5, 1e6),
}
# presets that pin their grids on purpose: the path reports in reports/ were trained on these
# grids, and `make path` on the preset trains (or finds) those same runs again
PINNED_GRIDS = {"path_mnist_small": PUBLISHED_GRIDS, "path_fashion_small": PUBLISHED_GRIDS}
SELECTION_SEEDS = (0, 1, 2)
SELECTED_ON = "val_accuracy"  # the curve whose best epoch a strength is chosen on
# the tuned comparison's fresh seeds: 200, 201, ... in rounds (100-119 trained the comparisons
# published before the group-sequential design; fresh seeds are never reused for a re-run)
TUNED_SEED_START = 200
# a verdict's own fresh seeds (in its own experiment, <preset>-verdict): never those of a tuned
# comparison, whose family of comparisons it would otherwise share
VERDICT_SEED_START = 1000
RULES = ("best", "1se")
CONTROL = "none"
PRESET_PREFIX = "path_"  # the experiment presets a path trains (path_presets)
RUN_PARTS = ("data", "model")  # what a path trains on: other values, another experiment


def description(preset: str) -> str:
    """What the experiment preset is for, in its own words: the comment that opens
    conf/experiment/<preset>.yaml (after its ``# @package`` line), as one paragraph."""
    lines = (CONF_DIR / "experiment" / f"{preset}.yaml").read_text().splitlines()
    comment = []
    for line in lines:
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            comment.append(line.lstrip("#").strip())
    return " ".join(comment)


def default_options(preset: str) -> list[str]:
    """What a path trains unless told: the preset's pinned options, else every built-in
    option with a penalty."""
    return list(PINNED_GRIDS[preset]) if preset in PINNED_GRIDS else [
        name for name in registry.names()
        if registry.get(name).builtin and registry.get(name).target is not None]


def _composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def probe_config(preset: str, option: str, extra: tuple[str, ...]):
    """The composed config a calibration probes: the preset, the option at its default
    strength, the first selection seed, the command line's overrides."""
    return _composed(f"experiment={preset}", f"regularizer={option}",
                     f"seed={SELECTION_SEEDS[0]}", *extra)


def experiment_name(preset: str, extra: tuple[str, ...]) -> str:
    """The experiment a path of ``preset`` trains into under the overrides ``extra`` (and its
    report folder): ``experiment_of`` the config they compose."""
    return experiment_of(preset, _composed(f"experiment={preset}", *extra))


def experiment_of(preset: str, cfg) -> str:
    """The experiment of a path of ``preset`` whose runs are composed as ``cfg``: the preset's
    name when the data and model are the preset's own; else
    ``<preset>-<data>-<model>-<6 hex digits of their config>``, so that a path on other data
    or another model never mixes with the preset's runs or report, and the grids the preset
    pins (for its own data) are not used (``PINNED_GRIDS`` is looked up by this name)."""
    def parts(cfg) -> dict:  # the seed's own keys (data.split_seed follows it) left out
        flat = flatten({part: OmegaConf.to_container(cfg[part], resolve=True)
                        for part in RUN_PARTS})
        return {key: value for key, value in flat.items() if key not in SEED_PARAMS}

    trained = parts(cfg)
    if trained == parts(_composed(f"experiment={preset}")):
        return preset
    digest = hashlib.sha256(json.dumps(trained, sort_keys=True).encode()).hexdigest()[:6]
    return f"{preset}-{trained['data.name']}-{trained['model.name']}-{digest}"


def path_presets() -> list[str]:
    """The experiment presets a path trains: conf/experiment/path_*.yaml."""
    return [o for o in group_options("experiment") if o.startswith(PRESET_PREFIX)]

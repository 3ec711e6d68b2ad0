import dataclasses
import subprocess

import keras
import pytest
from omegaconf import MISSING, OmegaConf

from helpers import PROJECT_ROOT, sqlite_uri, train
from helpers import compose as composed
from regbench import data, schema
from regbench.overrides import check_overrides, expand_jobs
from regbench.paths import CONF_DIR
from regbench.schema import config_groups, group_options
from regbench.validation import ConfigError, validate


@pytest.mark.parametrize("group", ["data", "model", "regularizer", "trainer", "experiment"])
def test_every_option_of_every_group_composes_and_validates(group):
    options = group_options(group)
    assert options
    for option in options:
        validate(composed(f"{group}={option}"))


def test_defaults_are_the_notebooks_model_one_with_a_held_out_validation_split():
    cfg = composed()
    assert (cfg.data.name, cfg.model.name, cfg.regularizer.name) == ("mnist", "mlp_bn", "l2")
    assert cfg.regularizer.weight == 1e-4 and cfg.data.validate_on == "val"
    assert list(cfg.model.units) == [1024, 512, 256] and cfg.model.activation == "swish"
    trainer = cfg.trainer
    assert (trainer.batch_size, trainer.epochs, trainer.learning_rate) == (128, 50, 1e-3)


def test_the_study_preset_sweeps_three_arms_over_five_seeds():
    cfg = composed("experiment=l2_vs_custom", hydra=True)
    assert dict(cfg.hydra.sweeper.params) == {"regularizer": "none,l2,custom",
                                              "seed": "range(0,5)"}
    assert cfg.data.validate_on == "val" and cfg.model.name == "mlp_bn"


def test_presets():
    notebook = composed("experiment=seed_notebook", "regularizer=custom")
    assert notebook.data.validate_on == "test" and notebook.regularizer.name == "custom"
    exercise = composed("experiment=l1_l2_exercise")
    assert exercise.model.name == "mlp_small" and exercise.regularizer.name == "l1_l2"
    assert (exercise.regularizer.l1, exercise.trainer.epochs, exercise.trainer.batch_size) == (
        1e-3, 10, 32)


@pytest.mark.parametrize("overrides, key", [
    (["regularizer=bogus"], "regularizer=bogus: unknown option; allowed are custom, l1"),
    (["trainer.epochs=0"], "trainer.epochs=0"),
    (["regularizer.weight=-1"], "regularizer.weight=-1"),
    (["regularizer=l1_l2", "regularizer.l2=-0.5"], "regularizer.l2=-0.5"),
    (["trainer.epochs=abc"], "trainer.epochs=abc"),
    (["trainer.no_such_key=1"], "trainer.no_such_key"),
    (["data.val_split=1.5"], "data.val_split=1.5"),
    (["-m", "regularizer=l2,nope", "seed=0,1"], "regularizer=nope"),
])
def test_check_overrides_names_the_bad_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace("(", r"\(")) as error:
        check_overrides(overrides)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("override", ["regularizer=bogus", "trainer.epochs=0",
                                      "regularizer.weight=-1"])
def test_bad_overrides_exit_non_zero_with_one_line_and_no_run(override, tmp_path):
    result = train(tmp_path, override)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and override.split("=")[0] in lines[0]
    db = tmp_path / "mlruns" / "mlflow.db"
    if db.exists():
        import mlflow

        mlflow.set_tracking_uri(sqlite_uri(tmp_path))
        assert mlflow.search_runs(search_all_experiments=True).empty


def test_make_passes_command_line_overrides_to_hydra():
    result = subprocess.run(
        ["make", "-n", "train", "regularizer=custom", "trainer.epochs=3", "seeds=4"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    command = [line for line in result.stdout.splitlines() if "regbench.train" in line]
    assert len(command) == 1
    assert "regularizer=custom" in command[0] and "trainer.epochs=3" in command[0]
    assert "seeds=4" not in command[0]


def _yaml_keys(group: str) -> set[str]:
    return {key for option in group_options(group)
            for key in OmegaConf.load(CONF_DIR / group / f"{option}.yaml")}


@pytest.mark.parametrize("group, node", [("data", schema.DataConfig),
                                         ("model", schema.ModelConfig),
                                         ("trainer", schema.TrainerConfig)])
def test_every_default_has_one_home_the_yaml(group, node):
    """A schema field the YAML sets has no default of its own (MISSING); the others are the
    optional keys only some options set, defaulting to None."""
    in_yaml = _yaml_keys(group)
    for field in dataclasses.fields(node):
        if field.name in in_yaml and field.name not in ("n_train", "n_test", "noise",
                                                        "generator_seed"):
            assert field.default is MISSING, f"{group}.{field.name} has a default in both"
        else:
            assert field.default is None, f"{group}.{field.name}"


def test_allowed_names_have_one_source():
    assert set(data.LOADERS) == set(schema.DATASETS)
    assert {composed(f"data={o}").data.name for o in group_options("data")} <= set(
        schema.DATASETS)
    for name in schema.OPTIMIZERS:
        assert keras.optimizers.get({"class_name": name, "config": {"learning_rate": 0.1}})
    assert set(config_groups()) == {"data", "model", "regularizer", "trainer", "experiment",
                                    "hparams_search"}


def test_sweeps_expand_like_hydras_basic_sweeper():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(
        ["regularizer=l2,custom", "seed=range(0,3)", "trainer.epochs=2", "seed=5,6",
         "+trainer.x=interval(0,1)"])
    jobs = expand_jobs(parsed)
    assert len(jobs) == 4 and ["regularizer=l2", "seed=5", "trainer.epochs=2"] in [
        sorted(job) for job in jobs]

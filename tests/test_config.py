import subprocess

import pytest
from hydra import compose, initialize_config_dir

from conftest import PROJECT_ROOT, sqlite_uri, train
from regbench.config import ConfigError, check_overrides, group_options, validate
from regbench.paths import CONF_DIR


def composed(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


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
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=l2_vs_custom"],
                      return_hydra_config=True)
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

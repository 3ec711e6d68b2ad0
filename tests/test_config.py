import dataclasses
import os
import shlex
import subprocess

import pytest
from omegaconf import MISSING, OmegaConf

from helpers import PROJECT_ROOT, sqlite_uri, train
from helpers import compose as composed
from regbench.config import registry, schema
from regbench.config.overrides import check_overrides, expand_jobs
from regbench.config.schema import group_options
from regbench.config.validation import validate
from regbench.errors import ConfigError
from regbench.locations import CONF_DIR, config_groups
from regbench.run import data, models


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
    assert (exercise.regularizer.weight, exercise.regularizer.l1_ratio) == (2e-3, 0.5)
    assert (exercise.trainer.epochs, exercise.trainer.batch_size) == (10, 32)


@pytest.mark.parametrize("preset", [None, *group_options("experiment")])
def test_every_preset_with_every_regularizer_holds_exactly_the_options_keys(preset):
    for option in group_options("regularizer"):
        cfg = composed(*([f"experiment={preset}"] if preset else []), f"regularizer={option}")
        validate(cfg)
        expected = schema.regularizer_keys(cfg.regularizer.name)
        assert set(cfg.regularizer) == set(expected), (preset, option)
        where = registry.get(cfg.regularizer.name).acts_on  # its class node: kernel or activity
        node = set(cfg.regularizer.get(where) or {})
        assert node == set(expected[where] or {}), (preset, option)


@pytest.mark.parametrize("option", group_options("regularizer"))
def test_the_arm_label_is_what_the_kernel_applies(option):
    from regbench.config import registry
    from regbench.record import arm_label

    cfg = composed(f"regularizer={option}")
    kernel = registry.build(cfg.regularizer)
    label = arm_label(cfg.regularizer.name, registry.strengths(cfg.regularizer.name, kernel))
    if kernel is None:
        assert label == "none"
        return
    config = kernel.get_config()
    assert label == "-".join([cfg.regularizer.name, *(
        f"{float(config[key]):g}" for key in registry.get(cfg.regularizer.name).label_keys())])
    assert f"{cfg.regularizer.weight:g}" in label  # the one strength key every option has


def test_the_exercise_bonus_does_what_it_says_or_is_refused():
    from regbench.config import registry
    from regbench.record import arm_label

    with pytest.raises(ConfigError, match="regularizer.l1"):
        check_overrides(["experiment=l1_l2_exercise", "regularizer=l1", "regularizer.l1=1e-3"])
    for overrides, arm in [(["regularizer=l1", "regularizer.weight=1e-3"], "l1-0.001"),
                           (["regularizer=l2"], "l2-0.0001"), (["regularizer=none"], "none"),
                           ([], "l1_l2-0.002-0.5")]:
        cfg = composed("experiment=l1_l2_exercise", *overrides)
        check_overrides(["experiment=l1_l2_exercise", *overrides])
        kernel = registry.build(cfg.regularizer)
        assert arm_label(cfg.regularizer.name, registry.strengths(cfg.regularizer.name,
                                                                  kernel)) == arm
        assert cfg.model.name == "mlp_small" and cfg.trainer.epochs == 10


def test_make_exercise_runs_the_three_arms_and_reports_the_targets():
    result = subprocess.run(["make", "-n", "exercise"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, check=True)
    commands = " ".join(result.stdout.replace("\\\n", " ").split())
    assert "experiment=l1_l2_exercise regularizer=l1,l2 regularizer.weight=1e-3" in commands
    assert "--target 'val_accuracy>=0.85' --target 'accuracy<0.92'" in commands


BAD_INPUTS = [  # overrides, the start of the one-line refusal
    (["seed=-1"], "seed=-1: must be an integer in [0, 4294967295]"),
    (["seed=4294967296"], "seed=4294967296"),
    (["data.val_split=0.0001", "data.limit=10"], "data.val_split=0.0001: holds out no example"),
    (["data.limit=10", "data.val_split=0.99"], "data.val_split=0.99: leaves no training"),
    (["trainer.batch_size=100000000000000000000"], "trainer.batch_size=100000000000000000000"),
    (["trainer.learning_rate=inf"], "trainer.learning_rate=inf: must be a finite number > 0"),
    (["trainer.lr_patience=-1"], "trainer.lr_patience=-1"),
    (["trainer.early_stopping_patience=-1"], "trainer.early_stopping_patience=-1"),
    (["+trainer.foo=1"], "trainer.foo: not a key of the config"),
    (["+regularizer.kernel.foo=1"], "regularizer.kernel.foo: not a key of regularizer option l2"),
    (["model=mlp_small", "model.units=[100000000]", "model.dropout=[0.0]"],
     "model.units=[100000000]: 7.95e+10 weights"),
    (["regularizer.kernel._target_=builtins.open"],
     "regularizer.kernel._target_=builtins.open: option l2 instantiates keras.regularizers.L2"),
    (["regularizer=custom", "regularizer.kernel.eps={_target_:os.getcwd}"],
     "regularizer.kernel.eps="),
    (["regularizer=l1_l2", "regularizer.l1_ratio=2"], "regularizer.l1_ratio=2"),
]


@pytest.mark.parametrize("overrides, message", BAD_INPUTS)
def test_bad_inputs_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        check_overrides(overrides)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_config_cannot_run_arbitrary_code(tmp_path):
    """A file copy through regularizer.kernel._target_ is refused before anything runs."""
    source, copy = tmp_path / "source.txt", tmp_path / "copy.txt"
    source.write_text("secret")
    result = train(tmp_path, "data=synthetic", "trainer=smoke",
                   "regularizer.kernel._target_=shutil.copyfile", "~regularizer.kernel.l2",
                   f"+regularizer.kernel.src={source}", f"+regularizer.kernel.dst={copy}")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(
        "error: regularizer.kernel.")
    assert not copy.exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("overrides, key", [
    (["regularizer=bogus"], "regularizer=bogus: unknown option; allowed are activity_l1"),
    (["trainer.epochs=0"], "trainer.epochs=0"),
    (["regularizer.weight=-1"], "regularizer.weight=-1"),
    (["regularizer=l1_l2", "regularizer.l1_ratio=-0.5"], "regularizer.l1_ratio=-0.5"),
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


def test_make_variables_reach_the_shell_quoted():
    result = subprocess.run(["make", "-n", "predict", "run=a'b; touch pwned", "image=x y.png"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert "regbench predict 'a'\\''b; touch pwned' 'x y.png'" in result.stdout


def test_make_passes_command_line_overrides_to_hydra():
    result = subprocess.run(
        ["make", "-n", "train", "regularizer=custom", "trainer.epochs=3", "max_seeds=4"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    command = [line for line in result.stdout.splitlines() if "regbench train" in line]
    assert len(command) == 1
    assert "regularizer=custom" in command[0] and "trainer.epochs=3" in command[0]
    assert "max_seeds=4" not in command[0]


@pytest.mark.parametrize("target", ["train", "sweep", "compare", "study", "path", "tuned",
                                    "verdict", "runs", "exercise"])
def test_make_passes_args_with_spaces_as_words_and_overrides_apart(target):
    """ARGS holding spaces is split into its words, after the overrides; an override whose
    value holds a space stays one word; neither leaks into the other."""
    result = subprocess.run(["make", "-n", target, "regularizer=l2", "mlflow.experiment_name=a b",
                             "ARGS=--first 2 --step 1"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, check=True)
    commands = [shlex.split(line.replace("\\\n", " ")) for line in
                result.stdout.replace("\\\n", " ").splitlines() if "regbench " in line]
    assert commands, result.stdout
    last = commands[-1]
    if target not in ("compare", "runs"):  # these take no Hydra overrides
        assert any("mlflow.experiment_name=a b" in command for command in commands)
    assert [word for command in commands for word in command if "--step" in word] == [
        "--step"]  # not also a Hydra override "2 --step 1", as make's escaped spaces once gave
    assert last[-4:] == ["--first", "2", "--step", "1"], last
    assert not any(word.startswith("ARGS=") for command in commands for word in command)


def test_make_verdict_and_path_take_the_plugin_and_the_options_as_make_variables():
    """plugin= reaches every command as REGBENCH_PLUGINS (absolute); regularizer= is the
    verdict's option, not a Hydra override of its runs; regularizers= is an option of path run
    and of tuned."""
    def dry_run(*arguments):
        return subprocess.run(["make", "-n", *arguments, "plugin=examples/soft_orthogonal.py"],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
                              env={**os.environ, "REGBENCH_PLUGINS": ""}).stdout

    verdict = dry_run("verdict", "regularizer=soft_orthogonal", "seed=3")
    assert "regbench verdict 'soft_orthogonal' --preset 'path_mnist_small'" in verdict
    assert "regularizer=soft_orthogonal" not in verdict and "seed=3" in verdict
    path_run = dry_run("path", "regularizers=soft_orthogonal,l2")
    assert "--regularizers 'soft_orthogonal,l2'" in path_run
    assert "regularizers=" not in path_run
    tuned = dry_run("tuned", "regularizers=l2")
    assert "--regularizers 'l2'" in tuned and "regularizers=" not in tuned

    exported = subprocess.run(
        ["make", "--no-print-directory", "--eval", "show:\n\t@echo $$REGBENCH_PLUGINS", "show",
         "plugin=examples/soft_orthogonal.py"], cwd=PROJECT_ROOT, capture_output=True,
        text=True, check=True).stdout.strip()
    assert exported == str(PROJECT_ROOT / "examples" / "soft_orthogonal.py")


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
    assert set(models.OWN_OPTIMIZERS) <= set(schema.OPTIMIZERS)
    for name in schema.OPTIMIZERS:
        assert float(models.make_optimizer(name, 0.1).learning_rate) == pytest.approx(0.1)
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


PREVIEWED_MISTAKES = [  # what a preview must refuse as the run does: overrides, the key named
    (["regularizer.weight=-1"], "regularizer.weight=-1"),
    (["trainer.epochs=0"], "trainer.epochs=0"),
    (["regularizer=custom", "regularizer.weight=abc"], "regularizer.weight=abc"),
    (["+regularizer.l1_ratio=0.5"], "regularizer.l1_ratio"),
    (["regularizer=nonexistent"], "regularizer=nonexistent"),
    (["data=nonexistent"], "data=nonexistent"),
    (["mlflow.experiment_name="], "mlflow.experiment_name="),
    (["mlflow.experiment_name=" + "x" * 10_000], "mlflow.experiment_name=xxx"),
    (["-m", "seed=0,1", "regularizer.weight=1e-4,-1"], "regularizer.weight=-1"),
]


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg", "all"], ["--info"],
                                   ["-m", "--cfg", "job"], []])
@pytest.mark.parametrize("overrides, key", PREVIEWED_MISTAKES)
def test_previews_refuse_what_the_run_refuses(flags, overrides, key, monkeypatch, capsys,
                                              tmp_path):
    """``--cfg``/``--info`` (alone or with -m) and the run itself: one line, exit 2, nothing
    created (in-process: the refusal comes before Hydra or any store)."""
    from regbench.cli import train as train_command

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["regbench", *flags, *overrides])
    with pytest.raises(SystemExit) as exit_:
        train_command.main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: {key}"), lines
    assert list(tmp_path.iterdir()) == []


def test_a_good_preview_still_shows_the_config(monkeypatch, capsys, tmp_path):
    from regbench.cli import train as train_command

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["regbench", "--cfg", "job", "regularizer=l1_l2"])
    train_command.main()
    shown = OmegaConf.create(capsys.readouterr().out)
    assert shown.regularizer.name == "l1_l2" and list(tmp_path.iterdir()) == []


def test_only_the_targets_that_need_mnist_ahead_fetch_it(tmp_path):
    """A run fetches MNIST when it uses it (data.provide_mnist); make fetches it ahead only
    for ``make data`` and ``make test``."""
    absent = f"MNIST={tmp_path / 'absent.npz'}"

    def planned(*arguments):
        return subprocess.run(["make", "-n", *arguments, absent], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, check=True).stdout

    assert "regbench data" in planned("data") and "regbench data" in planned("test")
    for target in (["train", "data=synthetic"], ["bench", "quick=1"], ["sweep"], ["study"],
                   ["path"], ["tuned"], ["exercise"]):
        assert "regbench data" not in planned(*target), target

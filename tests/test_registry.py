"""The regularizer registry: built-ins as before (arm labels, config hashes), a user's class
from a file of their own, and every way registering or using one can go wrong (one line)."""

import textwrap

import numpy as np
import pandas as pd
import pytest

from helpers import PROJECT_ROOT, run_command, sqlite_uri
from helpers import compose as composed
from regbench import record
from regbench.analysis import query
from regbench.config import registry
from regbench.config.overrides import check_overrides
from regbench.config.schema import group_options
from regbench.errors import ConfigError
from regbench.run.tracking import config_hash

EXAMPLE = PROJECT_ROOT / "examples" / "soft_orthogonal.py"

# config hash of the default config with each option (and weight 0.5), as computed before the
# registry replaced conf/regularizer/*.yaml: runs recorded then are still found and compared
HASHES_BEFORE_THE_REGISTRY = {
    ("custom",): "9f339983e9174463", ("custom", "0.5"): "29b52a3381bcdfa4",
    ("custom_columns",): "7481d69ea395d4b1", ("custom_columns", "0.5"): "10620111f567b168",
    ("l1",): "8443a59009f96071", ("l1", "0.5"): "4b8c4e16fdbe7aad",
    ("l1_l2",): "2892f99d6a322a29", ("l1_l2", "0.5"): "f78645bbb15a9fb2",
    ("l1_l2_exercise",): "6fc264c308cd3f99", ("l1_l2_exercise", "0.5"): "f78645bbb15a9fb2",
    ("l2",): "019198ed5ce518e4", ("l2", "0.5"): "988f95834e8b9583",
    ("none",): "881f922e48f7395e",
    ("orthogonal",): "74893929d3558c8c", ("orthogonal", "0.5"): "1ea8b48926041e7e",
}


@pytest.mark.parametrize("key", HASHES_BEFORE_THE_REGISTRY, ids="-".join)
def test_the_builtins_keep_their_config_hashes(key):
    option, *weight = key
    cfg = composed(f"regularizer={option}", *(f"regularizer.weight={w}" for w in weight))
    assert config_hash(cfg) == HASHES_BEFORE_THE_REGISTRY[key]


def test_none_takes_a_weight_and_ignores_it():
    """Its hash is the one without a weight, and runs of none at two weights are one arm."""
    for weight in ("0", "1e-3", "7"):
        cfg = composed("regularizer=none", f"regularizer.weight={weight}")
        assert config_hash(cfg) == HASHES_BEFORE_THE_REGISTRY[("none",)]
    runs = pd.DataFrame({"arm": ["none"] * 3, "seed": [0, 1, 2],
                         "params.regularizer.kernel": ["None"] * 3,
                         "params.regularizer.weight": [np.nan, "0.0", "0.001"]})
    assert query.split_mixed_arms(runs)[1] == []
    l2 = runs.assign(arm="l2", **{"params.regularizer.kernel": "{...}"})
    assert query.split_mixed_arms(l2)[1]  # a weight that is used still splits an arm


def test_the_built_in_option_list_is_the_registry():
    assert set(group_options("regularizer")) == set(registry.names()) | {"l1_l2_exercise"}
    assert [path.stem for path in (PROJECT_ROOT / "conf" / "regularizer").glob("*.yaml")] == [
        "l1_l2_exercise"]


@pytest.mark.parametrize("option", registry.names())
def test_every_builtin_passes_the_checks_a_users_class_must_pass(option):
    cfg = composed(f"regularizer={option}", "regularizer.weight=0.01")
    registry.check(option, registry.build(cfg.regularizer))


def test_the_example_computes_its_formula(plugin):
    plugin(EXAMPLE)
    import tensorflow as tf

    cls = registry.get("soft_orthogonal").regularizer_class()
    w = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
    expected = 0.3 * np.sum((w.T @ w - np.eye(5)) ** 2)
    assert float(cls(weight=0.3)(tf.constant(w))) == pytest.approx(expected, rel=1e-5)
    orthonormal = np.linalg.qr(w)[0]  # 12 x 5 with orthonormal columns: no penalty
    assert float(cls(weight=0.3)(tf.constant(orthonormal))) == pytest.approx(0, abs=1e-5)


def test_a_users_file_makes_an_option_that_trains_and_is_labelled(plugin, tmp_path):
    from regbench.run.training import train_and_evaluate

    plugin(EXAMPLE)
    overrides = ["regularizer=soft_orthogonal", "regularizer.weight=1e-3", "data=synthetic",
                 "trainer=smoke", f"mlflow.tracking_uri={sqlite_uri(tmp_path)}"]
    check_overrides(overrides)
    result = train_and_evaluate(composed(*overrides))
    assert result.arm == "soft_orthogonal-0.001"
    assert np.isfinite(result.metrics[record.TEST_ACCURACY])


GOOD_CLASS = """
    import keras
    from keras import ops
    from regbench.config.registry import regularizer

    class Mine(keras.regularizers.Regularizer):
        def __init__(self, weight=0.1):
            self.weight = weight
        def __call__(self, w):
            return self.weight * ops.sum(ops.square(w))
        def get_config(self):
            return {"weight": self.weight}
"""

REFUSED = {  # what the file adds to GOOD_CLASS, the overrides, the start of the one line
    "not a keras regularizer": ("regularizer('bad')(dict)", ["regularizer=l2"],
                                "regularizer bad: <class 'dict'> is not a keras.regularizers"),
    "strength not taken": ("regularizer('mine', strength='lam')(Mine)", ["regularizer=l2"],
                           "regularizer mine: Mine takes no argument 'lam'; its arguments are "
                           "weight"),
    "registered twice": ("regularizer('l2')(Mine)", ["regularizer=l2"],
                         "regularizer l2: registered twice (already keras.regularizers.L2)"),
    "unknown name": ("regularizer('mine')(Mine)", ["regularizer=mien"],
                     "regularizer=mien: unknown option; allowed are activity_l1, activity_l2"),
    "negative strength": ("regularizer('mine')(Mine)", ["regularizer=mine",
                                                          "regularizer.weight=-1"],
                          "regularizer.weight=-1: must be a finite number >= 0"),
    "non-finite strength": ("regularizer('mine')(Mine)", ["regularizer=mine",
                                                            "regularizer.weight=nan"],
                            "regularizer.weight=nan: must be a finite number >= 0"),
    "a vector": ("Mine.__call__ = lambda self, w: ops.sum(w, axis=0)\n"
                 "regularizer('mine')(Mine)", ["regularizer=mine"],
                 "regularizer=mine: Mine fails the check 'scalar': it returned shape (8,)"),
    "another dtype": ("Mine.__call__ = lambda self, w: ops.cast(ops.sum(w), 'float64')\n"
                      "regularizer('mine')(Mine)", ["regularizer=mine"],
                      "regularizer=mine: Mine fails the check 'dtype'"),
    "no gradient": ("Mine.__call__ = lambda self, w: ops.convert_to_tensor(1.0)\n"
                    "regularizer('mine')(Mine)", ["regularizer=mine"],
                    "regularizer=mine: Mine fails the check 'gradient'"),
    "not finite": ("Mine.__call__ = lambda self, w: ops.sum(w) / 0.0\n"
                   "regularizer('mine')(Mine)", ["regularizer=mine"],
                   "regularizer=mine: Mine fails the check 'finite'"),
    "an activity penalty taken for a kernel one": (
        "Mine.__call__ = lambda self, w: -ops.sum(ops.log(ops.mean(w, axis=0)))\n"
        "regularizer('mine')(Mine)", ["regularizer=mine"],
        "regularizer=mine: Mine fails the check 'finite': it returned nan for a kernel of shape "
        "(16, 8); on activations it passes them all: it looks like an activity regularizer "
        "(register it with acts_on='activity')"),
    "a kernel penalty taken for an activity one": (
        "Mine.__call__ = lambda self, w: ops.log(-ops.min(w))\n"
        "regularizer('mine', acts_on='activity')(Mine)", ["regularizer=mine"],
        "regularizer=mine: Mine fails the check 'finite': it returned nan for activations of "
        "shape (16, 8); on a kernel it passes them all: it looks like a kernel regularizer "
        "(register it with acts_on='kernel')"),
    "config lost": ("Mine.get_config = lambda self: {}\nregularizer('mine')(Mine)",
                    ["regularizer=mine"], "regularizer=mine: Mine fails the check 'config round "
                    "trip': get_config() has no weight"),
    "config wrong": ("Mine.get_config = lambda self: {'weight': 0.1}\n"
                     "regularizer('mine')(Mine)", ["regularizer=mine", "regularizer.weight=0.5"],
                     "regularizer=mine: Mine fails the check 'config round trip': "
                     "from_config(get_config()) gives"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_a_users_file_gets_wrong_is_refused_in_one_line(case, plugin):
    addition, overrides, message = REFUSED[case]
    plugin(textwrap.dedent(GOOD_CLASS) + addition + "\n")
    with pytest.raises(ConfigError) as error:
        check_overrides(overrides)
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_a_file_that_does_not_import_is_named_with_its_errors_last_line(plugin):
    path = plugin("import keras\nraise RuntimeError('first line\\nthe last line')\n")
    with pytest.raises(ConfigError, match=(
            f"^REGBENCH_PLUGINS={path}: does not import: RuntimeError: the last line$")):
        check_overrides(["regularizer=l2"])


def test_the_command_refuses_a_bad_class_before_anything_exists(plugin, tmp_path, monkeypatch,
                                                                  capsys):
    """exit 2, one line, no store, no output folder: the check runs before Hydra."""
    from regbench.cli import train as train_command

    plugin(textwrap.dedent(GOOD_CLASS) + "Mine.get_config = lambda self: {}\n"
           "regularizer('mine')(Mine)\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for multirun in ([], ["-m"]):
        monkeypatch.setattr("sys.argv", ["regbench", *multirun, "regularizer=mine",
                                         "regularizer.weight=0.3,0.4" if multirun else
                                         "regularizer.weight=0.3", "data=synthetic",
                                         f"mlflow.tracking_uri={sqlite_uri(work)}"])
        with pytest.raises(SystemExit) as exit_:
            train_command.main()
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(lines) == 1, lines
        assert "fails the check 'config round trip'" in lines[0]
        assert list(work.iterdir()) == []


def test_an_installed_packages_entry_point_registers_its_options(plugin, tmp_path,
                                                                  monkeypatch):
    """The group ``regbench.regularizers`` as an installed package declares it (pyproject's
    ``[project.entry-points."regbench.regularizers"]``): loading the entry point registers."""
    from importlib.metadata import EntryPoint

    plugin("")  # no file; the registry and Hydra's group are restored after the test
    (tmp_path / "their_package.py").write_text(textwrap.dedent(GOOD_CLASS)
                                               + "regularizer('theirs')(Mine)\n")
    (tmp_path / "broken_package.py").write_text("raise ImportError('no module named foo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [EntryPoint("theirs", "their_package", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    check_overrides(["regularizer=theirs", "regularizer.weight=0.2"])
    assert registry.get("theirs").target == "plugin.Mine"
    assert registry.get("theirs").source == "entry point their_package"
    packaged = config_hash(composed("regularizer=theirs"))
    # the same code from a file of another name: the same option, config hash and code
    # identity, so its runs are one arm however the class was loaded
    from regbench.run import identity

    code = identity.of_option("theirs")
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    plugin(textwrap.dedent(GOOD_CLASS) + "regularizer('theirs')(Mine)\n", name="renamed.py")
    check_overrides(["regularizer=theirs"])
    assert registry.get("theirs").source == f"file {tmp_path / 'renamed.py'}"
    assert config_hash(composed("regularizer=theirs")) == packaged
    assert identity.of_option("theirs").identity == code.identity
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    monkeypatch.delenv(registry.PLUGINS_ENV)
    points.append(EntryPoint("broken", "broken_package:Thing", registry.ENTRY_POINT_GROUP))
    registry.load.cache_clear()
    with pytest.raises(ConfigError, match=r"^entry point broken \(broken_package:Thing\) of "
                       r"group regbench.regularizers: does not import: ImportError: no module"):
        check_overrides(["regularizer=l2"])


BAD_PLUGINS = {
    "exits": ("import sys\nsys.exit(0)\n", "does not import: SystemExit: 0"),
    "raises": ("raise RuntimeError('broken\\nat its last line')\n",
               "does not import: RuntimeError: at its last line"),
    "hangs": ("import time\ntime.sleep(600)\n", "still importing after 1 s, given up"),
}
COMMANDS_THAT_LOAD = {
    "train": ["train", "regularizer=l2", "data=synthetic", "trainer=smoke"],
    "sweep": ["sweep", "regularizer=l2", "seed=0,1", "data=synthetic", "trainer=smoke"],
    "cfg job": ["train", "--cfg", "job", "regularizer=l2"],
    "verdict": ["verdict", "mine", "data=synthetic"],
}


@pytest.mark.parametrize("command", COMMANDS_THAT_LOAD)
@pytest.mark.parametrize("kind", BAD_PLUGINS)
def test_a_plugin_that_exits_raises_or_hangs_at_import_is_one_line_and_exit_2(
        plugin, monkeypatch, capsys, tmp_path, kind, command):
    from regbench.cli.main import dispatch

    source, expected = BAD_PLUGINS[kind]
    path = plugin(source, name=f"{kind}.py")
    monkeypatch.setenv(registry.PLUGIN_TIMEOUT_ENV, "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        dispatch([*COMMANDS_THAT_LOAD[command], f"mlflow.tracking_uri={sqlite_uri(tmp_path)}"])
    error = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2
    assert error == [f"error: {registry.PLUGINS_ENV}={path}: {expected}" + (
        f" ({registry.PLUGIN_TIMEOUT_ENV} sets the limit)" if kind == "hangs" else "")], error
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "multirun").exists()


def test_a_plugin_still_importing_is_named_before_the_limit(plugin, monkeypatch, capsys):
    plugin("import time\ntime.sleep(0.5)\n", name="slow.py")
    monkeypatch.setattr(registry, "ANNOUNCE_AFTER", 0.1)
    registry.load()
    assert capsys.readouterr().err.startswith("importing plugin REGBENCH_PLUGINS=")


def test_an_exiting_plugin_cannot_make_a_command_report_success(tmp_path):
    """The case as a user meets it: the command exits 2 with one line, nothing is created."""
    (tmp_path / "exits.py").write_text("import sys; sys.exit(0)\n")
    result = run_command("sweep", "regularizer=l2", "seed=0,1", cwd=tmp_path,
                         env={registry.PLUGINS_ENV: str(tmp_path / "exits.py")})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].endswith("does not import: SystemExit: 0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exits.py"]


def test_a_command_with_a_plugin_prints_none_of_tensorflow_s_start_up_lines(tmp_path):
    """A plugin imports Keras: TensorFlow is imported first, with its C++ lines left out."""
    from regbench.processes import TENSORFLOW_STARTUP_LINES

    result = run_command("train", "--cfg", "job", "regularizer=soft_orthogonal", cwd=tmp_path,
                         env={registry.PLUGINS_ENV: str(EXAMPLE)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert not [line for line in result.stderr.splitlines()
                if line.startswith(TENSORFLOW_STARTUP_LINES)], result.stderr


DECOV = PROJECT_ROOT / "examples" / "decov.py"


def test_an_activity_option_is_put_on_the_activations_and_says_so_in_its_config():
    """activity_l1's class node is ``activity:`` (its config hash differs from l1's), the
    model puts it on each hidden layer's activity_regularizer, and its inference copy has
    none."""
    from regbench.run.models import build_mlp, inference_copy

    cfg = composed("regularizer=activity_l1", "model=mlp_small")
    assert cfg.regularizer.get("kernel") is None and cfg.regularizer.activity.l1 == 1e-5
    assert config_hash(cfg) != config_hash(composed("regularizer=l1", "model=mlp_small",
                                                    "regularizer.weight=1e-5"))
    option = registry.get("activity_l1")
    model = build_mlp(cfg.model, lambda: registry.build(cfg.regularizer), acts_on=option.acts_on)
    hidden = [layer for layer in model.layers if layer.name != model.layers[-1].name]
    assert all(layer.activity_regularizer is not None and layer.kernel_regularizer is None
               for layer in hidden)
    assert all(layer.activity_regularizer is None for layer in inference_copy(model).layers)


def test_the_share_of_an_activity_penalty_is_computed_as_keras_adds_it():
    """Keras adds an activity term divided by the batch size; the recorded gradient share is
    ||d penalty / dW|| / ||d data loss / dW|| with that term, computed here by hand."""
    import keras
    import tensorflow as tf

    from regbench.run.models import build_mlp, penalty_shares

    cfg = composed("regularizer=activity_l2", "regularizer.weight=0.01", "model=mlp_small")
    model = build_mlp(cfg.model, lambda: registry.build(cfg.regularizer), acts_on="activity")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 784)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    loss_share, gradient_share = penalty_shares(model, x, y)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    kernels = [layer.kernel for layer in dense[:-1]]
    with tf.GradientTape(persistent=True) as tape:
        h, penalty = tf.constant(x), 0.0
        for layer in dense[:-1]:
            h = layer.activation(tf.matmul(h, layer.kernel) + layer.bias)
            penalty += 0.01 * tf.reduce_sum(tf.square(h)) / len(x)
        p = dense[-1](h)
        data = keras.losses.SparseCategoricalCrossentropy()(y, p)
    expected = (tf.linalg.global_norm(tape.gradient(penalty, kernels))
                / tf.linalg.global_norm(tape.gradient(data, kernels)))
    assert gradient_share == pytest.approx(float(expected), rel=1e-4)
    assert loss_share == pytest.approx(float(penalty / (data + penalty)), rel=1e-4)


def test_decov_computes_its_formula_and_keeps_its_strength_per_example(plugin):
    import tensorflow as tf

    plugin(DECOV)
    option = registry.get("decov")
    assert option.acts_on == registry.ACTIVITY
    h = np.abs(np.random.default_rng(1).normal(size=(20, 6))).astype(np.float32)
    c = np.cov(h, rowvar=False, bias=True)
    expected = 20 * 0.3 * 0.5 * (np.sum(c**2) - np.sum(np.diag(c) ** 2))
    built = option.regularizer_class()(weight=0.3)
    assert float(built(tf.constant(h))) == pytest.approx(expected, rel=1e-4)
    assert registry.batch_ratio(built, tf.constant(h)) == pytest.approx(
        registry.PER_EXAMPLE_RATIO, rel=1e-4)


def test_an_activity_penalty_that_a_batch_weakens_is_warned_about(plugin):
    """DeCov without its factor N: Keras' division by the batch size makes it weaker the
    larger the batch; the check says so, with the ratio it measured."""
    plugin(DECOV.read_text().replace("* n * 0.5", "* 0.5"), name="decov_mean.py")
    built = registry.get("decov").regularizer_class()(weight=0.1)
    with pytest.warns(UserWarning, match=r"regularizer=decov: on a batch repeated twice its "
                      r"value is 1x its value on the batch, not 2x"):
        registry.check("decov", built)


def test_an_activity_option_trains_with_its_share_recorded(tmp_path):
    from regbench.run.training import train_and_evaluate

    overrides = ["regularizer=activity_l1", "regularizer.weight=1e-3", "data=synthetic",
                 "trainer=smoke", "model=mlp_small", f"mlflow.tracking_uri={sqlite_uri(tmp_path)}"]
    check_overrides(overrides)
    result = train_and_evaluate(composed(*overrides))
    assert result.arm == "activity_l1-0.001"
    assert result.metrics[record.PENALTY_GRADIENT_SHARE] > 0
    assert result.metrics[record.TEST_PENALTY] > 0


def test_acts_on_must_be_kernel_or_activity():
    with pytest.raises(ConfigError, match="acts_on='bias'; allowed are kernel, activity"):
        registry.register("sideways", "keras.regularizers.L2", strength="l2", acts_on="bias")

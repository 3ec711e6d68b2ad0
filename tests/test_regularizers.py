import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import compose
from regbench.config import registry
from regbench.config.schema import group_options
from regbench.run.models import build_mlp, compile_classifier
from regbench.run.regularizers import (
    ElasticNet,
    RedundancyRegularizer,
    redundancy_penalty,
    redundancy_penalty_naive,
)

SHAPES = [(3, 4), (64, 32), (10, 300), (784, 1024), (1024, 512), (512, 256)]


def kernel(shape, seed, dtype=tf.float32):
    return tf.constant(np.random.default_rng(seed).normal(0, 0.05, size=shape), dtype)


@pytest.mark.parametrize("mode", ["rows", "columns"])
@pytest.mark.parametrize("shape", SHAPES)
def test_fast_and_naive_penalties_agree(shape, mode):
    w = kernel(shape, seed=sum(shape))
    fast, naive = float(redundancy_penalty(w, mode=mode)), float(
        redundancy_penalty_naive(w, mode=mode))
    assert naive > 0
    assert fast == pytest.approx(naive, rel=1e-6)


@pytest.mark.parametrize("mode", ["rows", "columns"])
@pytest.mark.parametrize("shape", SHAPES)
def test_fast_and_naive_gradients_agree(shape, mode):
    # float64: in float32 both gradients carry round-off of the order of their smallest entries
    w = tf.Variable(kernel(shape, seed=1 + sum(shape), dtype=tf.float64))
    grads = []
    for penalty in (redundancy_penalty, redundancy_penalty_naive):
        with tf.GradientTape() as tape:
            value = penalty(w, mode=mode)
        grads.append(tape.gradient(value, w).numpy())
    scale = np.abs(grads[1]).max()
    assert scale > 0
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-9 * scale)


def test_penalty_matches_the_formula_by_hand():
    w = np.array([[1.0, -1.0, 2.0], [0.0, 3.0, 1.0]])
    xn = np.abs(w) / (np.abs(w).sum(axis=1, keepdims=True) + 1e-8)
    c = xn.T @ xn
    expected = 0.5 * (c.sum() - np.trace(c)) / 9
    assert float(RedundancyRegularizer(weight=0.5)(tf.constant(w))) == pytest.approx(expected)


def test_elastic_net_is_l1l2_with_one_strength_and_a_mix():
    w = kernel((6, 5), seed=4)
    net = ElasticNet(weight=2e-3, l1_ratio=0.25)
    expected = keras.regularizers.L1L2(l1=5e-4, l2=1.5e-3)(w)
    assert float(net(w)) == pytest.approx(float(expected), rel=1e-6)
    assert ElasticNet.from_config(net.get_config()).get_config() == {"weight": 2e-3,
                                                                     "l1_ratio": 0.25}
    with pytest.raises(ValueError, match="l1_ratio must be in"):
        ElasticNet(1e-3, l1_ratio=1.5)


def test_config_round_trip():
    reg = RedundancyRegularizer(weight=3e-3, eps=1e-6, mode="columns")
    again = RedundancyRegularizer.from_config(reg.get_config())
    assert again.get_config() == {"weight": 3e-3, "eps": 1e-6, "mode": "columns"}


def test_columns_mode_normalises_each_units_incoming_weights():
    w = np.array([[1.0, -1.0, 2.0], [0.0, 3.0, 1.0]])
    xn = np.abs(w) / (np.abs(w).sum(axis=0, keepdims=True) + 1e-8)
    c = xn.T @ xn
    expected = 0.5 * (c.sum() - np.trace(c)) / 9
    penalty = RedundancyRegularizer(weight=0.5, mode="columns")(tf.constant(w))
    assert float(penalty) == pytest.approx(expected)
    with pytest.raises(ValueError, match="mode must be one of rows, columns"):
        RedundancyRegularizer(mode="diagonal")


@pytest.mark.parametrize("arguments, name", [
    ({"weight": -1}, "weight"), ({"weight": float("nan")}, "weight"),
    ({"weight": float("inf")}, "weight"), ({"weight": "1e-3"}, "weight"),
    ({"weight": True}, "weight"), ({"eps": 0.0}, "eps"), ({"eps": float("nan")}, "eps")])
def test_arguments_are_validated_as_keras_validates_its_own(arguments, name):
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        RedundancyRegularizer(**arguments)


def test_only_rank_2_kernels_are_accepted():
    with pytest.raises(ValueError, match=r"rank-2 \(Dense\) kernels.*\(3, 3, 4, 8\)"):
        RedundancyRegularizer(1e-3)(tf.zeros((3, 3, 4, 8)))


@pytest.mark.parametrize("dtype", [tf.float16, tf.float32, tf.float64])
def test_the_penalty_has_the_kernels_dtype(dtype):
    penalty = RedundancyRegularizer(0.1)(kernel((8, 4), seed=3, dtype=dtype))
    assert penalty.dtype == dtype


@pytest.mark.parametrize("option", group_options("regularizer"))
def test_a_model_with_each_regularizer_saves_and_loads(option, tmp_path):
    """Also with an integer strength, as a command line's regularizer.weight=1 gives it."""
    cfg = compose(f"regularizer={option}", "model=mlp_small",
                  *([] if option == "none" else ["regularizer.weight=1"]))
    model = compile_classifier(build_mlp(cfg.model, lambda: registry.build(cfg.regularizer)),
                               cfg.trainer)
    x = np.random.default_rng(0).uniform(size=(64, 784)).astype(np.float32)
    y = np.arange(64) % 10
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    penalties = [float(p) for p in loaded.losses]
    assert penalties == pytest.approx([float(p) for p in model.losses])
    assert (len(penalties) == 0) == (option == "none")

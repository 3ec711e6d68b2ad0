"""FusedAdam: Keras' Adam, each variable's update one TensorFlow kernel."""

import keras
import numpy as np
import pytest

from regbench.run.optimizers import FusedAdam


def trained(optimizer: keras.optimizers.Optimizer, x, y) -> tuple[list, list]:
    """A small Dense/BatchNorm classifier's weights and its optimizer's slots after 12 steps at
    the optimizer's learning rate, then 12 at a tenth of it (as ReduceLROnPlateau sets it)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="swish"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    model.compile(optimizer=optimizer, steps_per_execution=4,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    optimizer.learning_rate = optimizer.learning_rate * 0.1
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    return model.get_weights(), [v.numpy() for v in optimizer.variables]


def test_fused_adam_updates_like_keras_adam():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(192, 20)).astype(np.float32)
    y = rng.integers(0, 3, size=192)
    start, _ = trained(keras.optimizers.SGD(0.0), x, y)
    keras_weights, keras_slots = trained(keras.optimizers.Adam(0.01), x, y)
    fused_weights, fused_slots = trained(FusedAdam(0.01), x, y)
    assert max(np.max(np.abs(w - s)) for w, s in zip(keras_weights, start, strict=True)) > 0.05
    for fused, reference in zip(fused_weights + fused_slots, keras_weights + keras_slots,
                                strict=True):
        np.testing.assert_allclose(fused, reference, rtol=1e-4, atol=1e-6)
    assert FusedAdam.from_config(FusedAdam(0.01).get_config()).name == "fused_adam"


def test_fused_adam_refuses_amsgrad():
    with pytest.raises(ValueError, match="amsgrad=True is not supported"):
        FusedAdam(amsgrad=True)

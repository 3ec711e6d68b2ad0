"""Keras models from the ``model`` and ``trainer`` config groups. Knows nothing of MLflow or Hydra.

Every model is a ``PenaltyTrackingSequential``: Keras' ``Sequential`` plus one metric, so that a
fit reports the split that Keras' ``loss`` hides::

    loss = data_loss + penalty

``data_loss`` is Keras' own SparseCategoricalCrossentropy metric on the same predictions the loss
used, ``penalty`` the sum of the layers' regularization terms at the weights the loss used; each
is the batch-size-weighted mean over the epoch's batches, as Keras averages ``loss``.
"""

from collections.abc import Callable

import keras
from keras import ops

import regbench.run.regularizers  # noqa: F401  (registers RedundancyRegularizer for loading)
from regbench.run.optimizers import FusedAdam

OWN_OPTIMIZERS = {"fused_adam": FusedAdam}  # the names of schema.OPTIMIZERS that are not Keras'


@keras.saving.register_keras_serializable(package="regbench")
class PenaltyTrackingSequential(keras.Sequential):
    """A Sequential model whose ``penalty`` metric is the regularization term inside ``loss``.

    penalty (per epoch) = sum over batches b of n_b * sum(model.losses at step b) / sum of n_b
    """

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(layers=layers, trainable=trainable, name=name)
        self.penalty_tracker = keras.metrics.Mean(name="penalty")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        terms = self.losses
        penalty = ops.sum(ops.stack(terms)) if terms else ops.zeros((), dtype=total.dtype)
        self.penalty_tracker.update_state(penalty, sample_weight=ops.shape(y_pred)[0])
        return total


REGULARIZED = ("kernel_regularizer", "activity_regularizer")  # where a Dense layer takes one


def build_mlp(model_cfg, make_regularizer: Callable[[], keras.regularizers.Regularizer | None],
              name: str | None = None, acts_on: str = "kernel") -> PenaltyTrackingSequential:
    """Dense hidden layers (each: the regularizer on its kernel, or on its output activations
    when ``acts_on`` is ``activity``, then BatchNorm and Dropout if configured), then a
    softmax output layer without a regularizer, as in both seed notebooks."""
    layers = [keras.Input(shape=(model_cfg.input_dim,))]
    for units, rate in zip(model_cfg.units, model_cfg.dropout, strict=True):
        layers.append(keras.layers.Dense(units, activation=model_cfg.activation,
                                         **{f"{acts_on}_regularizer": make_regularizer()}))
        if model_cfg.batch_norm:
            layers.append(keras.layers.BatchNormalization())
        if rate > 0:
            layers.append(keras.layers.Dropout(rate))
    layers.append(keras.layers.Dense(model_cfg.num_classes, activation="softmax"))
    return PenaltyTrackingSequential(layers, name=name or model_cfg.name)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The optimizer ``name`` (one of schema.OPTIMIZERS) at ``learning_rate``: regbench's own
    (OWN_OPTIMIZERS) or one ``keras.optimizers.get`` knows."""
    if name in OWN_OPTIMIZERS:
        return OWN_OPTIMIZERS[name](learning_rate=learning_rate)
    return keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})


def compile_classifier(model: keras.Model, trainer_cfg) -> keras.Model:
    """Sparse categorical cross-entropy, accuracy and ``data_loss``; the optimizer named by
    ``trainer.optimizer`` at ``trainer.learning_rate`` (``make_optimizer``)."""
    model.compile(
        optimizer=make_optimizer(trainer_cfg.optimizer, trainer_cfg.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                 keras.metrics.SparseCategoricalCrossentropy(name="data_loss")],
        steps_per_execution=trainer_cfg.steps_per_execution,
        jit_compile=trainer_cfg.jit_compile,
    )
    return model


def penalty_shares(model: keras.Model, x, y) -> tuple[float, float]:
    """How much the regularizer weighs in the loss and in its gradient, on examples ``x, y``
    at the model's current weights (inference mode: no dropout)::

        loss share     = penalty / (data_loss + penalty)
        gradient share = ||d penalty / dW|| / ||d data_loss / dW||

    with W the kernels of the regularized layers (a kernel penalty's, or those whose outputs an
    activity penalty reads, which it pulls through the activations), the penalty as Keras
    adds it to the loss (an activity term divided by the batch size) and ||.|| the global L2
    norm. A penalty can be a large share of the loss yet a negligible share of the gradient
    (its value mostly a constant); only the gradient share says how hard it pulls on the
    weights. (0, 0) without a regularizer."""
    import tensorflow as tf

    kernels = [layer.kernel for layer in model.layers
               if any(getattr(layer, key, None) is not None for key in REGULARIZED)]
    if not kernels:
        return 0.0, 0.0
    loss = keras.losses.SparseCategoricalCrossentropy()
    with tf.GradientTape(persistent=True) as tape:
        data_loss = loss(y, model(x, training=False))
        penalty = ops.sum(ops.stack(model.losses))
    data_gradient = tf.linalg.global_norm(tape.gradient(data_loss, kernels))
    penalty_gradient = tf.linalg.global_norm(tape.gradient(penalty, kernels))
    return (float(penalty / (data_loss + penalty)), float(penalty_gradient / data_gradient))


def inference_copy(model: keras.Model) -> keras.Sequential:
    """The same layers and weights as a plain ``keras.Sequential`` without regularizers or the
    penalty metric: what a prediction needs, loadable and servable where regbench is not
    installed (the regularizer is recorded in the run's params and config.yaml)."""
    layers = [keras.Input(shape=model.input_shape[1:])]
    for layer in model.layers:
        config = layer.get_config()
        for key in REGULARIZED:
            if key in config:
                config[key] = None
        layers.append(layer.__class__.from_config(config))
    copy = keras.Sequential(layers, name=model.name)
    copy.set_weights(model.get_weights())
    return copy

"""regbench's own optimizers: a Keras optimizer's formula, updated by one TensorFlow kernel.

Keras 3 writes Adam's update as some ten TensorFlow ops per variable; TensorFlow has the whole
update as one kernel, ``ResourceApplyAdam`` (what tf.keras' Adam ran before Keras 3). ``make
bench`` measures a train step with each, side by side.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="regbench")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam (same arguments and formula), each variable's update one
    ``ResourceApplyAdam`` kernel. At step t, with gradient g::

        lr_t = learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        m <- m + (g - m) * (1 - beta_1)
        v <- v + (g^2 - v) * (1 - beta_2)
        w <- w - lr_t * m / (sqrt(v) + epsilon)

    The result equals Keras' Adam to float32 round-off (the kernel rounds in another order).
    TensorFlow backend only; ``amsgrad`` is refused (its kernel's slots are not Keras')."""

    def __init__(self, learning_rate=0.001, amsgrad=False, name="fused_adam", **kwargs):
        if amsgrad:
            raise ValueError("FusedAdam: amsgrad=True is not supported; use keras.optimizers.Adam")
        super().__init__(learning_rate=learning_rate, amsgrad=False, name=name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        # Keras' Adam keeps m and v in the private lists _momentums and _velocities, indexed by
        # the private _get_variable_index (Keras 3.15); no public accessor exists.
        # tests/test_optimizers.py pins this update against keras.optimizers.Adam's.
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))

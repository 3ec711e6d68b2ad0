"""Soft orthogonality, a regularizer regbench does not ship, registered from this file.

Bansal, Chen and Wang (2018), "Can We Gain More from Orthogonality Regularizations in Training
Deep CNNs?", NeurIPS: for a Dense kernel W of shape (inputs, units),

    penalty = weight * ||W^T W - I||_F^2

which pushes the units' incoming weight vectors towards an orthonormal set.
To a verdict on small-data MNIST (docs/regularizers.md):

    make verdict plugin=examples/soft_orthogonal.py regularizer=soft_orthogonal
"""

import keras
from keras import ops

from regbench import regularizer


@regularizer("soft_orthogonal")  # its strength is the constructor argument `weight`
class SoftOrthogonal(keras.regularizers.Regularizer):
    """weight * ||W^T W - I||_F^2 on a kernel W of shape (inputs, units)."""

    def __init__(self, weight=1e-4):
        self.weight = float(weight)

    def __call__(self, kernel):
        gram = ops.matmul(ops.transpose(kernel), kernel)
        identity = ops.eye(ops.shape(kernel)[1], dtype=kernel.dtype)
        return ops.cast(self.weight, kernel.dtype) * ops.sum(ops.square(gram - identity))

    def get_config(self):
        return {"weight": self.weight}

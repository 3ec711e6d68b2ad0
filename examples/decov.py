"""DeCov, a regularizer on activations that regbench does not ship, registered from this file.

Cogswell, Ahmed, Girshick, Zitnick and Batra (2016), "Reducing Overfitting in Deep Networks by
Decorrelating Representations", ICLR: for a layer's activations h of a batch of N examples
(shape (N, units)), with C the covariance of the units over the batch,

    C_ij = 1/N sum_n (h_i^n - mu_i) (h_j^n - mu_j),
    L_DeCov = 1/2 (||C||_F^2 - ||diag(C)||_2^2),    penalty = weight * L_DeCov

which penalises the units' off-diagonal covariance: they are pushed to carry different
information. Keras divides an activity regularizer's value by the batch size, to keep a sum over
examples per example; L_DeCov is already a batch statistic, so this class returns N * weight *
L_DeCov, and the loss holds weight * L_DeCov as the paper adds it, whatever the batch size
(regbench's check measures this and warns when it is not so). To a verdict on small-data MNIST
(docs/regularizers.md):

    make verdict plugin=examples/decov.py regularizer=decov
"""

import keras
from keras import ops

from regbench import regularizer


@regularizer("decov", acts_on="activity")  # on each hidden layer's output activations
class DeCov(keras.regularizers.Regularizer):
    """N * weight * 1/2 (||C||_F^2 - ||diag(C)||^2) on activations h of shape (N, units)."""

    def __init__(self, weight=1e-4):
        self.weight = float(weight)

    def __call__(self, activations):
        n = ops.cast(ops.shape(activations)[0], activations.dtype)
        centred = activations - ops.mean(activations, axis=0, keepdims=True)
        covariance = ops.matmul(ops.transpose(centred), centred) / n
        off_diagonal = ops.sum(ops.square(covariance)) - ops.sum(
            ops.square(ops.diagonal(covariance)))
        return ops.cast(self.weight, activations.dtype) * n * 0.5 * off_diagonal

    def get_config(self):
        return {"weight": self.weight}

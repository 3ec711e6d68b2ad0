"""The custom "redundancy" regularizer of the seed notebook, computed exactly and fast.

For a Dense kernel W of shape (in, out)::

    X  = |W|
    Xn = X / (row sums of X + eps)          # each input's outgoing weights sum to 1 (mode rows;
                                            # mode columns: column sums, each unit's inputs)
    C  = Xn^T Xn                            # (out, out) overlap between output units
    penalty = weight * mean(C - diag(C))    # mean over all out*out entries, diagonal zeroed

The sum of all entries of C equals sum_i (sum_j Xn_ij)^2 and its trace equals sum_ij Xn_ij^2, so

    penalty = weight * (sum_i (sum_j Xn_ij)^2 - sum_ij Xn_ij^2) / out^2

which is the same number in O(in*out) time and memory instead of O(in*out^2) time and O(out^2)
memory. ``redundancy_penalty_naive`` keeps the notebook's matrix form as the reference.
"""


import keras
from keras import ops

from regbench.config.numbers import finite_number
from regbench.config.registry import REDUNDANCY_EPS


def _finite_float(value, name: str, positive: bool = False) -> float:
    """``value`` as a float if it is a finite number >= 0 (> 0 if ``positive``), as Keras' own
    regularizers check their strengths; else ValueError naming the argument."""
    if not finite_number(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {name}={value!r}")
    return float(value)


MODES = {"rows": 1, "columns": 0}  # mode -> the axis whose sums normalise |W|


def _normalise(kernel, eps, mode="rows"):
    """Xn = |W| / (sums of |W| + eps): each row sums to 1 (``rows``: an input's outgoing
    weights) or each column (``columns``: an output unit's incoming weights)."""
    magnitude = ops.abs(kernel)
    return magnitude / (ops.sum(magnitude, axis=MODES[mode], keepdims=True) + eps)


def redundancy_penalty(kernel, eps=REDUNDANCY_EPS, mode="rows"):
    """mean of the off-diagonal entries of Xn^T Xn via the O(in*out) identity (unweighted)."""
    xn = _normalise(kernel, eps, mode)
    out = ops.cast(ops.shape(kernel)[1], xn.dtype)
    all_entries = ops.sum(ops.square(ops.sum(xn, axis=1)))
    diagonal = ops.sum(ops.square(xn))
    return (all_entries - diagonal) / (out * out)


def redundancy_penalty_naive(kernel, eps=REDUNDANCY_EPS, mode="rows"):
    """The notebook's form: build C = Xn^T Xn, zero its diagonal, take the mean (unweighted)."""
    xn = _normalise(kernel, eps, mode)
    cross = ops.matmul(ops.transpose(xn), xn)
    off_diagonal = cross - ops.diag(ops.diagonal(cross))
    return ops.mean(off_diagonal)


@keras.saving.register_keras_serializable(package="regbench")
class RedundancyRegularizer(keras.regularizers.Regularizer):
    """Penalises overlap between the output units of a Dense kernel W (in x out).

    ``penalty = weight * (sum_i (sum_j Xn_ij)^2 - sum_ij Xn_ij^2) / out^2`` with
    ``Xn = |W| / (row sums of |W| + eps)``: the mean off-diagonal entry of Xn^T Xn, computed
    in O(in*out). See the module docstring for the derivation.

    Args:
        weight: strength of the penalty, a finite float >= 0.
        eps: added to each row (column) sum so that an all-zero row does not divide by zero; a
            finite float > 0.
        mode: ``rows`` (the seed notebook's: each input's outgoing weights sum to 1, so most of
            the penalty's value is the constant ``in / out^2`` and its gradient is small) or
            ``columns`` (each output unit's incoming weights sum to 1, which is most likely what
            the notebook meant: the overlap between output units' input profiles). The
            O(in*out) identity holds in both.

    The kernel must have rank 2 (a Dense kernel); the penalty has the kernel's dtype.
    """

    def __init__(self, weight=1e-4, eps=REDUNDANCY_EPS, mode="rows"):
        self.weight = _finite_float(weight, "weight")
        self.eps = _finite_float(eps, "eps", positive=True)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got mode={mode!r}")
        self.mode = mode

    def __call__(self, x):
        if len(x.shape) != 2:
            raise ValueError(f"RedundancyRegularizer applies to rank-2 (Dense) kernels, got a "
                             f"kernel of shape {tuple(x.shape)}")
        return ops.cast(self.weight, x.dtype) * redundancy_penalty(x, self.eps, self.mode)

    def get_config(self):
        return {"weight": self.weight, "eps": self.eps, "mode": self.mode}


@keras.saving.register_keras_serializable(package="regbench")
class ElasticNet(keras.regularizers.L1L2):
    """Keras' L1L2 with one strength and a mix, as glmnet and scikit-learn's ElasticNet
    parametrise it (without their 1/2 on the L2 term)::

        penalty = weight * (l1_ratio * sum(|W|) + (1 - l1_ratio) * sum(W^2))

    i.e. ``L1L2(l1=weight * l1_ratio, l2=weight * (1 - l1_ratio))``: l1_ratio 1 is L1, 0 is L2.

    Args:
        weight: strength of the penalty, a finite float >= 0.
        l1_ratio: the L1 share of the strength, a float in [0, 1].
    """

    def __init__(self, weight=1e-4, l1_ratio=0.5):
        weight = _finite_float(weight, "weight")
        l1_ratio = _finite_float(l1_ratio, "l1_ratio")
        if l1_ratio > 1:
            raise ValueError(f"l1_ratio must be in [0, 1], got l1_ratio={l1_ratio!r}")
        super().__init__(l1=weight * l1_ratio, l2=weight * (1 - l1_ratio))
        self.weight, self.l1_ratio = weight, l1_ratio

    def get_config(self):
        return {"weight": self.weight, "l1_ratio": self.l1_ratio}

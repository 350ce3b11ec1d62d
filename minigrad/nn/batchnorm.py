"""BatchNorm: the Keras BatchNormalization layer, with PyTorch's statistics convention on request.

The four stored parameters of the seed: gamma and beta (trainable), moving_mean and
moving_variance (not trainable), each of shape (features,). The arithmetic is in
minigrad.nn.functional.batch_norm and minigrad.ops.batch_norm.

Conventions, and how to get PyTorch's:

    Keras  BatchNormalization()                      == BatchNorm()
    PyTorch BatchNorm1d(C, eps=1e-5, momentum=0.1)    == BatchNorm(momentum=0.9, epsilon=1e-5,
                                                                   unbiased=True)
    PyTorch BatchNorm1d(C, momentum=None)             == BatchNorm(momentum=None, epsilon=1e-5,
                                                                   unbiased=True)

PyTorch's momentum is the weight of the new batch, Keras's the weight of the old average, so
PyTorch's p is Keras's 1 - p. PyTorch feeds the moving variance the unbiased batch variance
(m/(m-1) times the biased one, the paper's Eq. 4); Keras feeds the biased one. Both normalize
with the biased one. PyTorch's 2-D layer on (N, C, H, W) is BatchNorm(axis=1, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minigrad.nn import constraints, functional as F, initializers, regularizers
from minigrad.nn.module import Module
from minigrad.tensor import Tensor


class BatchNorm(Module):
    """Batch Normalization over feature axis `axis`, statistics over every other axis.

    Training mode (training=True, or the module in train() mode, and trainable) normalizes
    with the batch mean and biased batch variance and updates
    moving = moving * momentum + batch * (1 - momentum) (Eq. 5, 6). momentum=None keeps the
    exact average over all batches seen instead (Eq. 3 and 4 of the seed's population part).
    unbiased=True feeds the moving variance m/(m-1) * batch variance. Inference mode uses the
    moving statistics and updates nothing; with trainable=False the layer is always in
    inference mode, as in Keras.
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float | None = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        *,
        unbiased: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"BatchNorm: axis must be an int, got {axis!r}")
        if momentum is not None and (
            isinstance(momentum, bool) or not isinstance(momentum, (int, float))
            or not 0.0 <= momentum <= 1.0
        ):
            raise ValueError(f"BatchNorm: momentum must be in [0, 1] or None, got {momentum!r}")
        F.check_epsilon(epsilon, self.dtype, "BatchNorm")
        self.axis = int(axis)
        self.momentum = momentum
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.unbiased = unbiased
        # Looked up now, so that a misspelt name fails here rather than at the first call.
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma: Tensor | None = None
        self.beta: Tensor | None = None
        self.moving_mean: Tensor | None = None
        self.moving_variance: Tensor | None = None
        self.input_ndim: int | None = None
        self.features: int | None = None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        ndim = len(input_shape)
        if not -ndim <= self.axis < ndim or input_shape[self.axis] is None:
            raise ValueError(
                f"BatchNorm(axis={self.axis}) cannot be built for input shape {tuple(input_shape)}: "
                "the feature axis must exist and have a known size"
            )
        self.input_ndim = ndim
        self.features = int(input_shape[self.axis])
        shape = (self.features,)
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer,
                            regularizer=self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer,
                            regularizer=self.beta_regularizer, constraint=self.beta_constraint)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer, trainable=False)
        # How many training batches the moving statistics have seen: momentum=None needs it
        # to weight the next batch by 1/n, and a reload must resume the same average.
        self.add_weight("num_batches_tracked", (), "zeros", trainable=False, dtype=np.int64)
        super().build(input_shape)

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        if x.ndim != self.input_ndim or x.shape[self.axis] != self.features:
            raise ValueError(
                f"BatchNorm(axis={self.axis}) was built for {self.input_ndim}-D inputs with "
                f"{self.features} features on axis {self.axis}, but got input shape {x.shape}"
            )
        if x.dtype.kind != "f":
            x = x.astype(self.dtype)  # integer and bool input is normalized as floats, as in Keras
        training = self.training if training is None else bool(training)
        training = training and self.trainable  # a frozen layer always runs in inference mode
        momentum = self.momentum
        if momentum is None:
            # Exact running average: after n batches, moving = (1/n) sum of the batch values,
            # which is Eq. 5 with momentum (n-1)/n.
            seen = int(self.num_batches_tracked.item()) + 1
            momentum = (seen - 1) / seen
        y = F.batch_norm(
            x, self.gamma, self.beta, self.moving_mean, self.moving_variance,
            training=training, axis=self.axis, momentum=momentum,
            epsilon=self.epsilon, unbiased=self.unbiased,
        )
        if training:
            self.num_batches_tracked.data += 1
        return y

    def check_state(self, values: dict[str, np.ndarray], source: str, prefix: str = "") -> None:
        """Refuse loaded statistics that would break the next call: a negative or non-finite
        moving variance (NaN at inference), a non-finite moving mean, or a negative batch
        count (momentum=None would divide by zero)."""
        problems = {
            "moving_mean": ("finite", lambda v: np.isfinite(v).all()),
            "moving_variance": ("finite and >= 0", lambda v: (np.isfinite(v) & (v >= 0)).all()),
            "num_batches_tracked": (">= 0", lambda v: (v >= 0).all()),
        }
        for name, (expected, valid) in problems.items():
            if name in values and not valid(values[name]):
                bad = values[name].reshape(-1)
                raise ValueError(
                    f"load from {source}: {prefix}{name} must be {expected}, got "
                    f"{np.array2string(bad[:8], threshold=8)}{' ...' if bad.size > 8 else ''}"
                )

    def extra_repr(self) -> str:
        return (
            f"axis={self.axis}, momentum={self.momentum}, epsilon={self.epsilon:g}, "
            f"center={self.center}, scale={self.scale}, unbiased={self.unbiased}, "
            f"features={self.features}"
        )

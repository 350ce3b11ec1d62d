"""BatchNorm: the Keras BatchNormalization layer, with PyTorch's statistics convention on request.

The four stored parameters the Keras BatchNormalization guide lists: gamma and beta
(trainable), moving_mean and moving_variance (not trainable), each of shape (features,). The
arithmetic is in minigrad.nn.functional.batch_norm, which runs the equations of
minigrad.ops.batch_norm (the reference implementation) or their fast restatement in
minigrad.ops.batch_norm_fast (the default; see mg.nn.batch_norm_form).

Conventions, and how to get PyTorch's:

    Keras  BatchNormalization()                      == BatchNorm()
    PyTorch BatchNorm1d(C, eps=1e-5, momentum=0.1)    == BatchNorm(momentum=0.9, epsilon=1e-5,
                                                                   unbiased=True)
    PyTorch BatchNorm1d(C, momentum=None)             == BatchNorm(momentum=None, epsilon=1e-5,
                                                                   unbiased=True)

PyTorch's momentum is the weight of the new batch, Keras's the weight of the old average, so
PyTorch's p is Keras's 1 - p. PyTorch feeds the moving variance the unbiased batch variance
(m/(m-1) times the biased one, the guide's Eq. 4); Keras feeds the biased one. Both normalize
with the biased one. PyTorch's 2-D layer on (N, C, H, W) is BatchNorm(axis=1, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minigrad.nn import constraints, functional as F, initializers, regularizers
from minigrad.nn.module import Module
from minigrad.ops import batch_norm as reference
from minigrad.tensor import Tensor


class BatchNorm(Module):
    """Batch Normalization, as keras.layers.BatchNormalization: normalize, scale and shift each feature.

    In training (training=True, or the module in train() mode, and trainable), for each
    feature k over the m values of the mini-batch B (every axis but `axis`):

        y = gamma * (x - mu_B) / sqrt(sigma_B^2 + epsilon) + beta        (Eq. 1, 2, 3a)
        moving_mean     = moving_mean     * momentum + mu_B      * (1 - momentum)   (Eq. 5)
        moving_variance = moving_variance * momentum + sigma_B^2 * (1 - momentum)   (Eq. 6)

    with mu_B the batch mean and sigma_B^2 the biased batch variance. In inference
    (training=False, eval(), or trainable=False, as in Keras) the moving statistics take
    their place and nothing is updated:

        y = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta

    The equations are numbered as in the Keras BatchNormalization guide, with its two
    "Eq. 3" told apart as Eq. 3a (batch variance) and Eq. 3b (population mean).

    Args:
        axis: the feature axis, normalized separately; statistics are taken over every other
            axis. -1 for (batch, features) and channels-last images, 1 for (N, C, H, W).
            Default -1.
        momentum: the weight of the old average in Eq. 5 and 6, a number in [0, 1] (PyTorch's
            momentum p is 1 - p here). None keeps the exact average of every batch seen
            instead (Eq. 3b, and Eq. 4 with unbiased=True): momentum (n-1)/n at the n-th batch,
            as PyTorch's momentum=None. Default 0.99.
        epsilon: added to the variance before the square root, a number > 0 that the dtype
            can hold; it keeps a constant feature finite. Default 1e-3.
        center: whether to add the learned offset beta. Default True.
        scale: whether to multiply by the learned factor gamma; off, gamma is 1 (fine when
            the next layer is linear, or a ReLU then a linear layer: it absorbs the scale).
            Default True.
        beta_initializer: how beta starts: a name from minigrad.nn.initializers or a
            callable(shape, dtype). Default "zeros".
        gamma_initializer: how gamma starts. Default "ones".
        moving_mean_initializer: how the moving mean starts. Default "zeros".
        moving_variance_initializer: how the moving variance starts. Default "ones".
        beta_regularizer: a penalty on beta that regularization_loss() adds up: a name
            ("l2"), a callable or None. Default None.
        gamma_regularizer: the same for gamma. Default None.
        beta_constraint: applied to beta after each optimizer step: a name ("non_neg",
            "unit_norm"), a callable or None. Default None.
        gamma_constraint: the same for gamma. Default None.
        unbiased: feed Eq. 6 the unbiased batch variance m/(m-1) * sigma_B^2 (Eq. 4's
            correction, PyTorch's convention) instead of the biased one (Keras's). The output
            is normalized with the biased one either way. Keyword only. Default False.
        dtype: the weights' float dtype (a Module argument, passed up through **kwargs).
            Default "float32".
        trainable: False freezes the layer: gamma and beta get no gradient, and the layer
            always runs in inference mode, as in Keras (a Module argument). Default True.
        **kwargs: dtype and trainable only. Keras's `name` is not taken: an unknown keyword
            is an error that names the closest valid one.

    Call arguments:
        x: the input Tensor (or array), with the feature axis of the size the layer was built
            for. Integer and bool input is normalized as floats; float16 is computed in
            float32 and returned as float16.
        training: True for training mode, False for inference, None (default) for the
            module's own mode (train() or eval()).

    Input shape:
        any, with at least two values per feature in training. Output shape: the same.

    Weights, created on the first call (or by build(input_shape)), each of shape (features,):
        gamma: trainable; only with scale=True, else gamma is None.
        beta: trainable; only with center=True, else beta is None.
        moving_mean, moving_variance: not trainable, saved by state_dict().
        num_batches_tracked: shape (), the training batches seen (momentum=None needs it).

    mg.nn.batch_norm_form picks the code that runs in training: the fast kernels (default),
    or the reference equations ("closed_form", "composite"); all give the same values.

    Example:

        >>> import numpy as np
        >>> import minigrad as mg
        >>> layer = mg.nn.BatchNorm(momentum=0.9, dtype="float64")
        >>> x = mg.Tensor([[1.0, 10.0], [3.0, 30.0]], dtype="float64")
        >>> y = layer(x, training=True)
        >>> np.round(y.numpy(), 4).tolist()  # (x - mu_B) / sqrt(sigma_B^2 + 0.001), per column
        [[-0.9995, -1.0], [0.9995, 1.0]]
        >>> np.round(layer.moving_mean.numpy(), 4).tolist()  # 0 * 0.9 + mu_B * 0.1
        [0.2, 2.0]
        >>> y = layer(x, training=False)  # inference: the moving statistics, nothing updated
        >>> layer.gamma.shape, layer.beta.shape
        ((2,), (2,))
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
        if momentum is None:  # Eq. 3b and 4 kept up to date: the exact average of every batch
            momentum = reference.cumulative_momentum(int(self.num_batches_tracked.item()))
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

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
    PyTorch BatchNorm1d(C, track_running_stats=False) == BatchNorm(track_running_stats=False)
    Keras BatchNormalization(renorm=True, ...)        == BatchNorm(renorm=True, ...)

PyTorch's momentum is the weight of the new batch, Keras's the weight of the old average, so
PyTorch's p is Keras's 1 - p. PyTorch feeds the moving variance the unbiased batch variance
(m/(m-1) times the biased one, the guide's Eq. 4); Keras feeds the biased one. Both normalize
with the biased one. PyTorch's 2-D layer on (N, C, H, W) is BatchNorm(axis=1, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minigrad import backend
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

    With renorm=True (Batch Renormalization, Ioffe 2017), training corrects the batch
    statistics towards the moving ones, so that training and inference compute the same
    function even for small or non-i.i.d. batches:

        sigma_B = sqrt(sigma_B^2 + epsilon)
        r = clip(sigma_B / renorm_stddev, rmin, rmax)
        d = clip((mu_B - renorm_mean) / renorm_stddev, -dmax, dmax)
        y = gamma * (x_hat * r + d) + beta       r and d constants in backward (stop-gradient)

    then renorm_mean and renorm_stddev average mu_B and sigma_B with renorm_momentum, the moving
    mean and moving_stddev with momentum, and moving_variance = max(moving_stddev^2 - epsilon, 0).
    Inference is unchanged.

    Args:
        axis: the feature axis, normalized separately; statistics are taken over every other
            axis. -1 for (batch, features) and channels-last images, 1 for (N, C, H, W). A tuple
            or list of axes (as tf.keras 2 allowed) normalizes each position of those axes
            separately: gamma, beta and the statistics then have the shape of those axes.
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
        renorm: Batch Renormalization (above); adds the non-trainable moving_stddev,
            renorm_mean and renorm_stddev. Default False.
        renorm_clipping: a dict with any of "rmax", "rmin", "dmax": r is clipped to
            [rmin, rmax], d to [-dmax, dmax]; a missing key does not clip. Other keys, rmax <
            rmin or dmax < 0 are errors, as in Keras. None means {} (no clipping); the paper
            starts at rmax=1, dmax=0 (plain BatchNorm) and relaxes them. Default None.
        renorm_momentum: the weight of the old renorm_mean and renorm_stddev. Default 0.99.
        synchronized: Keras's switch (PyTorch's SyncBatchNorm): in training, the statistics
            of every process's part of the batch, once minigrad.distributed.init() has joined
            several processes under mpiexec; dl/dx is then the gradient of the sum of all
            processes' losses. In one process it computes exactly what False does. A mask
            cannot be combined with it across processes. Default False.
        unbiased: feed Eq. 6 the unbiased batch variance m/(m-1) * sigma_B^2 (Eq. 4's
            correction, PyTorch's convention) instead of the biased one (Keras's). The output
            is normalized with the biased one either way. Keyword only. Default False.
        track_running_stats: PyTorch's switch. False keeps no moving statistics: the layer
            normalizes with batch statistics in training and inference alike. Set to False on a
            built layer, it stops updating them (inference still uses them), as in PyTorch.
            Keyword only. Default True.
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
        mask: None, or a boolean array of x's shape without its last axis, or broadcastable
            to it (Keras's rule: it is broadcast along x's last axis). In training, positions where it is False are
            left out of the batch mean and variance, which divide by the count plus 1e-7 (a
            fully masked batch gives 0 and 0, and updates the moving statistics with them).
            Every position is normalized. Inference ignores it, as in Keras.

    Input shape:
        any, with at least two values per feature in training. Output shape: the same.

    Weights, created on the first call (or by build(input_shape)), each of shape (features,)
    (the feature axes' shape for a tuple axis):
        gamma: trainable; only with scale=True, else gamma is None.
        beta: trainable; only with center=True, else beta is None.
        moving_mean, moving_variance: not trainable, saved by state_dict(); None with
            track_running_stats=False.
        moving_stddev, renorm_mean, renorm_stddev: with renorm=True only, saved likewise.
        num_batches_tracked: shape (), the training batches seen (momentum=None needs it).
    reset_running_stats() starts the statistics again; reset_parameters() also gamma and beta.

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
        axis: int | tuple[int, ...] | list[int] = -1,
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
        renorm: bool = False,
        renorm_clipping: dict | None = None,
        renorm_momentum: float = 0.99,
        synchronized: bool = False,
        *,
        unbiased: bool = False,
        track_running_stats: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, list):
            axis = tuple(axis)
        for each in axis if isinstance(axis, tuple) else (axis,):
            if isinstance(each, bool) or not isinstance(each, (int, np.integer)):
                raise TypeError(f"BatchNorm: axis must be an int or a tuple of ints, got {axis!r}")
        if isinstance(axis, tuple) and (not axis or len(set(axis)) != len(axis)):
            raise ValueError(f"BatchNorm: axis must name one or more distinct axes, got {axis!r}")
        _check_momentum(momentum, "momentum", allow_none=True)
        _check_momentum(renorm_momentum, "renorm_momentum")
        F.check_epsilon(epsilon, self.dtype, "BatchNorm")
        for name, value in [("center", center), ("scale", scale), ("renorm", renorm),
                            ("synchronized", synchronized), ("unbiased", unbiased),
                            ("track_running_stats", track_running_stats)]:
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"BatchNorm: {name} must be True or False, got {value!r}")
        if renorm:
            renorm_clipping = _checked_clipping(renorm_clipping)
            if unbiased or not track_running_stats or momentum is None:
                raise ValueError(
                    "BatchNorm: renorm=True keeps Keras's moving statistics, so it cannot be combined "
                    "with unbiased=True, track_running_stats=False or momentum=None (PyTorch's switches); "
                    f"got unbiased={unbiased}, track_running_stats={track_running_stats}, momentum={momentum}"
                )
        self.axis = tuple(int(a) for a in axis) if isinstance(axis, tuple) else int(axis)
        self.momentum = momentum
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.renorm = renorm
        self.renorm_clipping = renorm_clipping  # as Keras: {} when renorm is on and none was given
        self.renorm_momentum = renorm_momentum
        # In one process the statistics are the process's own, so it computes exactly what
        # synchronized=False does. After minigrad.distributed.init() on several processes, the
        # per-channel count, sum and squared deviations of every process's rows are combined in
        # minigrad.ops.batch_norm.combine_moments (minigrad.ops.batch_norm_sync).
        self.synchronized = synchronized
        self.unbiased = unbiased
        self.track_running_stats = track_running_stats
        # Looked up now, so that a misspelt name fails here rather than at the first call.
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        for name in self.STATISTICS + ("gamma", "beta"):
            setattr(self, name, None)
        self.input_ndim: int | None = None
        self.features: int | tuple[int, ...] | None = None

    # Every non-trainable weight the layer may hold, in the order build creates them.
    STATISTICS = ("moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev",
                  "num_batches_tracked")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        ndim = len(input_shape)
        feature_axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        unique = {a % ndim for a in feature_axes if -ndim <= a < ndim}
        if (any(not -ndim <= a < ndim or input_shape[a] is None for a in feature_axes)
                or len(unique) != len(feature_axes) or len(unique) == ndim):
            raise ValueError(
                f"BatchNorm(axis={self.axis}) cannot be built for input shape {tuple(input_shape)}: "
                "each feature axis must exist, be named once and have a known size, and at least one "
                "axis must be left for the statistics"
            )
        self.input_ndim = ndim
        # The weights' shape: the feature axes' sizes, in the order of the axes in the input.
        self._feature_axes = tuple(sorted(a % ndim for a in feature_axes))
        shape = tuple(int(input_shape[a]) for a in self._feature_axes)
        self._feature_shape = shape
        self.features = shape[0] if not isinstance(self.axis, tuple) else shape
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer,
                            regularizer=self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer,
                            regularizer=self.beta_regularizer, constraint=self.beta_constraint)
        for name, initializer, dtype in self._statistics_initializers():
            self.add_weight(name, () if name == "num_batches_tracked" else shape, initializer,
                            trainable=False, dtype=dtype)
        super().build(input_shape)

    def _statistics_initializers(self) -> list[tuple[str, Any, Any]]:
        """(name, initializer, dtype) of each non-trainable weight this layer keeps."""
        if not self.track_running_stats:
            return []  # PyTorch's track_running_stats=False: no moving statistics at all
        weights = [("moving_mean", self.moving_mean_initializer, None),
                   ("moving_variance", self.moving_variance_initializer, None)]
        if self.renorm:
            # As Keras: the stddevs start as the square root of the moving variance's start.
            def stddev(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
                return np.sqrt(self.moving_variance_initializer(shape, dtype))

            weights += [("moving_stddev", stddev, None), ("renorm_mean", self.moving_mean_initializer, None),
                        ("renorm_stddev", stddev, None)]
        # How many training batches the moving statistics have seen: momentum=None needs it
        # to weight the next batch by 1/n, and a reload must resume the same average.
        return weights + [("num_batches_tracked", "zeros", np.int64)]

    def forward(self, x: Tensor, training: bool | None = None, mask: Any = None) -> Tensor:
        if x.ndim != self.input_ndim or tuple(x.shape[a] for a in self._feature_axes) != self._feature_shape:
            raise ValueError(
                f"BatchNorm(axis={self.axis}) was built for {self.input_ndim}-D inputs with "
                f"{self.features} features on axis {self.axis}, but got input shape {x.shape}"
            )
        if x.dtype.kind != "f":
            x = x.astype(self.dtype)  # integer and bool input is normalized as floats, as in Keras
        training = self.training if training is None else bool(training)
        training = training and self.trainable  # a frozen layer always runs in inference mode
        # PyTorch's rule: batch statistics in training, and in inference too when there are no
        # moving ones; the moving ones are updated only while track_running_stats is on.
        batch_statistics = training or self.moving_mean is None
        update = training and self.track_running_stats and self.moving_mean is not None
        use_moving = update or not batch_statistics
        momentum = self.momentum
        if momentum is None and update:  # Eq. 3b and 4 kept up to date: the exact average of every batch
            momentum = reference.cumulative_momentum(int(self.num_batches_tracked.item()))
        renorm = None
        if self.renorm and batch_statistics:
            # F.batch_norm updates them in place only when it gets the moving statistics (update).
            renorm = F.Renorm(self.renorm_mean, self.renorm_stddev, self.moving_stddev,
                              momentum=self.renorm_momentum, clipping=self.renorm_clipping)
        y = F.batch_norm(
            x, self.gamma, self.beta, self.moving_mean if use_moving else None,
            self.moving_variance if use_moving else None,
            training=batch_statistics, axis=self.axis, momentum=0.0 if momentum is None else momentum,
            epsilon=self.epsilon, unbiased=self.unbiased, mask=mask,  # checked; unused in inference
            renorm=renorm, synchronized=self.synchronized and training,  # as PyTorch: in training only
        )
        if update:
            self.num_batches_tracked.data += 1
        return y

    def reset_running_stats(self) -> None:
        """Start the moving statistics again, as PyTorch's reset_running_stats(): each from its
        initializer (moving mean 0, moving variance 1 by default), and the batch count at 0."""
        if not self.built:
            return
        for name, initializer, dtype in self._statistics_initializers():
            weight = getattr(self, name)
            weight.data[...] = backend.to_backend(
                np.asarray(initializers.get(initializer)(weight.shape, weight.dtype)), weight.backend)

    def reset_parameters(self) -> None:
        """reset_running_stats(), and gamma and beta from their initializers (1 and 0 by default),
        as PyTorch's reset_parameters(). The weights are written in place, so an optimizer
        holding them goes on with the reset values."""
        self.reset_running_stats()
        for name, initializer in [("gamma", self.gamma_initializer), ("beta", self.beta_initializer)]:
            weight = getattr(self, name)
            if weight is not None:
                weight.data[...] = backend.to_backend(np.asarray(initializer(weight.shape, weight.dtype)),
                                                      weight.backend)

    def check_state(self, values: dict[str, np.ndarray], source: str, prefix: str = "") -> None:
        """Refuse loaded statistics that would break the next call: a negative or non-finite
        moving variance or stddev (NaN at inference), a non-finite mean, or a negative batch
        count (momentum=None would divide by zero)."""
        finite = ("finite", lambda v: np.isfinite(v).all())
        non_negative = ("finite and >= 0", lambda v: (np.isfinite(v) & (v >= 0)).all())
        problems = {
            "moving_mean": finite, "renorm_mean": finite,
            "moving_variance": non_negative, "moving_stddev": non_negative, "renorm_stddev": non_negative,
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
        # The switches show only when they differ from their defaults.
        options = "".join(f", {name}={value}" for name, value, default in [
            ("renorm", self.renorm, False), ("synchronized", self.synchronized, False),
            ("track_running_stats", self.track_running_stats, True)] if value != default)
        return (
            f"axis={self.axis}, momentum={self.momentum}, epsilon={self.epsilon:g}, "
            f"center={self.center}, scale={self.scale}, unbiased={self.unbiased}{options}, "
            f"features={self.features}"
        )


def _check_momentum(value: Any, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"BatchNorm: {name} must be in [0, 1]{' or None' if allow_none else ''}, got {value!r}")


def _checked_clipping(clipping: Any) -> dict:
    """renorm_clipping validated as Keras does: keys among rmax, rmin, dmax; rmax >= rmin; dmax >= 0."""
    clipping = clipping or {}
    keys = ["rmax", "rmin", "dmax"]
    if not isinstance(clipping, dict) or set(clipping) - set(keys):
        raise ValueError(
            f"BatchNorm: received invalid keys for `renorm_clipping` argument: {clipping}. "
            f"Supported values: {keys}."
        )
    for key, value in clipping.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
                                  or np.isnan(value)):
            raise ValueError(f"BatchNorm: renorm_clipping[{key!r}] must be a number or None, got {value!r}")
    rmax, rmin, dmax = (clipping.get(k) for k in keys)
    if rmax is not None and rmin is not None and rmax < rmin:
        raise ValueError(f"BatchNorm: rmax should be greater than rmin in the `renorm_clipping` argument. "
                         f"Received: rmax={rmax}, rmin={rmin}.")
    if dmax is not None and dmax < 0:
        raise ValueError(f"BatchNorm: dmax should be non-negative in the `renorm_clipping` argument. "
                         f"Received: dmax={dmax}.")
    return dict(clipping)

"""The layers as functions: relu, sigmoid, dense, conv2d, max_pool2d, avg_pool2d,
global_avg_pool2d, flatten, batch_norm, and the losses
softmax_cross_entropy and mse; and batch_norm_form, the switch between BatchNorm's
implementations.

The modules in minigrad.nn hold weights and call these; these hold the arithmetic.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from minigrad import backend, distributed, ops
from minigrad.autograd import no_grad
from minigrad.nn.conv import conv2d  # noqa: F401  (re-exported: the functional form of Conv2D)
from minigrad.nn.pooling import avg_pool2d, flatten, global_avg_pool2d, max_pool2d  # noqa: F401  (re-exported)
from minigrad.ops import batch_norm as reference, batch_norm_fast as fast, batch_norm_sync as sync
from minigrad.tensor import Tensor

# Each form trains with the same equations; they differ in the code that runs (see batch_norm).
BATCH_NORM_FORMS = ("fast", "closed_form", "composite")


def relu(x: Tensor) -> Tensor:
    """max(x, 0), elementwise."""
    return ops.relu(x)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + e^-x), elementwise."""
    return ops.sigmoid(x)


def dense(x: Tensor, kernel: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ kernel + bias, with kernel of shape (in_features, units)."""
    y = x @ kernel
    return y if bias is None else y + bias


def softmax_cross_entropy(logits: Tensor, labels: Any) -> Tensor:
    """Mean over the batch of -log softmax(logits)[label], for logits (N, K) and int labels (N,).

    Computed through log-sum-exp with the row maximum subtracted first, so large logits
    neither overflow exp nor lose the answer.
    """
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be (batch, classes), got shape {logits.shape}")
    batch, classes = logits.shape
    if batch == 0 or classes == 0:
        raise ValueError(
            f"softmax_cross_entropy: the batch is empty (logits of shape {logits.shape}); the "
            "mean loss needs at least one example and one class"
        )
    labels = backend.to_backend(labels.data if isinstance(labels, Tensor) else np.asarray(labels), logits.backend)
    if labels.dtype.kind not in "iu" or labels.shape != (batch,):
        raise ValueError(
            f"softmax_cross_entropy: labels must be integers of shape ({batch},), got "
            f"{labels.dtype} of shape {labels.shape}"
        )
    if batch and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise ValueError(f"softmax_cross_entropy: label {bad} is outside [0, {classes})")
    # log sum_j exp(z_j) = c + log sum_j exp(z_j - c) for any c; c = max keeps exp <= 1.
    # The shift is a constant (detached): the loss does not depend on it.
    shifted = logits - logits.max(axis=1, keepdims=True).detach()
    log_sum_exp = shifted.exp().sum(axis=1).log()
    picked = shifted[backend.get_array_module(labels).arange(batch), labels]
    return (log_sum_exp - picked).mean()


def mse(prediction: Tensor, target: Any) -> Tensor:
    """Mean squared error, mean((prediction - target)^2); the shapes must be equal."""
    target = target if isinstance(target, Tensor) else Tensor(target, dtype=prediction.dtype)
    if prediction.shape != target.shape:
        raise ValueError(
            f"mse: prediction has shape {prediction.shape} but target has shape {target.shape}; "
            "they must be equal (no broadcasting, so a (N, 1) vs (N,) slip is caught)"
        )
    difference = prediction - target
    return (difference * difference).mean()


class _BatchNormFormSetting:
    """The form batch_norm_form set, and the one it replaced, restored when a `with` ends."""

    form = "fast"  # the setting itself, read by batch_norm(form=None)

    def __init__(self, form: str) -> None:
        _check_form(form, "batch_norm_form")
        self.previous = _BatchNormFormSetting.form
        _BatchNormFormSetting.form = form

    def __enter__(self) -> str:
        return _BatchNormFormSetting.form

    def __exit__(self, *exc: object) -> None:
        _BatchNormFormSetting.form = self.previous


def batch_norm_form(form: str) -> _BatchNormFormSetting:
    """Choose the implementation that batch_norm(form=None), and so every BatchNorm layer, runs.

    form is one of BATCH_NORM_FORMS: "fast" (the default), "closed_form" or "composite"; see
    batch_norm. It takes effect at once, for the whole process. As a context manager it
    restores the previous form when the block ends, error or not:

        with mg.nn.batch_norm_form("closed_form"):   # train with the reference formulas
            loss = loss_fn(model(x), labels)
            loss.backward()

    A name not in BATCH_NORM_FORMS raises ValueError and changes nothing.
    """
    return _BatchNormFormSetting(form)


def get_batch_norm_form() -> str:
    """The form batch_norm(form=None) runs now: "fast" unless batch_norm_form changed it."""
    return _BatchNormFormSetting.form


def _check_form(form: Any, caller: str) -> None:
    if not isinstance(form, str) or form not in BATCH_NORM_FORMS:
        raise ValueError(f"{caller}: form {form!r} is not one of {BATCH_NORM_FORMS}")


class Renorm(NamedTuple):
    """Batch Renormalization's state and settings, for batch_norm(renorm=...).

    renorm_mean and renorm_stddev are what r and d measure the batch against; moving_stddev is
    what the moving variance follows. All three are Tensors of shape (features,), updated in
    place when batch_norm updates the moving statistics.
    """

    renorm_mean: Tensor
    renorm_stddev: Tensor
    moving_stddev: Tensor
    momentum: float = 0.99  # renorm_momentum: the weight of the old renorm_mean and renorm_stddev
    clipping: dict | None = None  # any of "rmin", "rmax", "dmax"; a missing key does not clip


def batch_norm(
    x: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    moving_mean: Tensor | None = None,
    moving_variance: Tensor | None = None,
    *,
    training: bool = True,
    axis: int | tuple[int, ...] = -1,
    momentum: float = 0.99,
    epsilon: float = 1e-3,
    unbiased: bool = False,
    form: str | None = None,
    mask: Any = None,
    renorm: Renorm | None = None,
    synchronized: bool = False,
) -> Tensor:
    """Batch Normalization of x along feature axis `axis`, statistics over every other axis.

    training=True normalizes with the batch mean and biased batch variance (Eq. 2, 3a, 1)
    and, when the moving statistics are given, updates them in place by Eq. 5 and 6 (Keras's
    convention: moving = moving * momentum + batch * (1 - momentum)); unbiased=True feeds
    them m/(m-1) * variance instead (Eq. 4's correction, PyTorch's convention).
    training=False normalizes with the moving statistics and updates nothing. gamma, beta and
    the moving statistics have the shape of the feature axes: (x.shape[axis],) for one axis,
    (x.shape[a] for a in axis) for a tuple of axes. float16 input is computed in float32 and
    returned as float16.

    mask (training only, as in Keras): a boolean array of x's shape without its last axis (or
    broadcastable to it);
    positions where it is False are left out of the batch mean and variance (whose count then
    gets MASK_EPSILON, so a fully masked batch gives 0 and 0), and every position is still
    normalized. renorm: Batch Renormalization (see Renorm and the layer's docstring).
    synchronized=True, once minigrad.distributed.init() has joined several processes, takes the
    training statistics over every process's rows (BatchNormSync, minigrad.ops.batch_norm_sync,
    whatever the form); in a world of one it changes nothing.

    form picks the implementation of training mode; all give the same values and derivatives:
        "fast"         BatchNormFast (minigrad.ops.batch_norm_fast): the fast kernels forward
                       and, at first order, backward. The default.
        "closed_form"  BatchNormClosedForm (minigrad.ops.batch_norm): the reference equations
                       forward and the paper's closed-form backward.
        "composite"    batch_norm_composite: the reference equations in Tensor operations,
                       differentiated by the engine.
        None           whatever batch_norm_form set (get_batch_norm_form()).
    With create_graph=True, "fast" and "closed_form" both run closed_form_backward in the
    graph. With a mask, training runs masked_batch_norm (Tensor operations) whatever the form.
    Inference always runs minigrad.ops.batch_norm.batch_norm_inference.
    """
    feature_axes = _feature_axes(axis, x.shape)
    mask = None if mask is None else _mask_weights(mask, x)
    options = dict(training=training, momentum=momentum, epsilon=epsilon, unbiased=unbiased, form=form,
                   synchronized=bool(synchronized) and distributed.world_size() > 1)
    if len(feature_axes) > 1:
        return _over_merged_axes(x, feature_axes, mask, gamma, beta, moving_mean, moving_variance, renorm,
                                 **options)
    return _batch_norm(x, gamma, beta, moving_mean, moving_variance, feature_axes[0], mask, renorm, **options)


def _batch_norm(x: Tensor, gamma: Tensor | None, beta: Tensor | None, moving_mean: Tensor | None,
                moving_variance: Tensor | None, feature_axis: int, mask: Tensor | None, renorm: Renorm | None,
                *, training: bool, momentum: float, epsilon: float, unbiased: bool, form: str | None,
                synchronized: bool) -> Tensor:
    """batch_norm on one feature axis (non-negative), with the mask (if any) in x's shape."""
    channels = x.shape[feature_axis]
    axes = tuple(i for i in range(x.ndim) if i != feature_axis)
    form, count = _checked_arguments(x, feature_axis, gamma, beta, moving_mean, moving_variance, mask, renorm,
                                     training, momentum, unbiased, form, synchronized)

    # float16 has too little range for squared deviations: compute in (at least) float32.
    # Integer and bool input is computed in float32 and returned as float, as in Keras.
    compute_dtype = np.result_type(x.dtype, np.float32) if x.dtype.kind == "f" else np.dtype(np.float32)
    output_dtype = x.dtype if x.dtype.kind == "f" else compute_dtype
    check_epsilon(epsilon, compute_dtype, "batch_norm")
    broadcast_shape = tuple(channels if i == feature_axis else 1 for i in range(x.ndim))

    def prepared(weight: Tensor | None) -> Tensor | None:
        return None if weight is None else weight.astype(compute_dtype).reshape(broadcast_shape)

    x_compute = x.astype(compute_dtype)
    gamma_b, beta_b = prepared(gamma), prepared(beta)
    if not training:
        with no_grad():  # the moving statistics are constants of the graph
            mean_b, variance_b = prepared(moving_mean), prepared(moving_variance)
        y = reference.batch_norm_inference(x_compute, mean_b, variance_b, gamma_b, beta_b, epsilon)
        return y.astype(output_dtype)

    # With renorm, gamma and beta come after the correction: the transform yields x_hat.
    gamma_t, beta_t = (None, None) if renorm is not None else (gamma_b, beta_b)
    if synchronized:  # statistics over every process's rows (a mask is refused there, on every rank)
        fn = sync.BatchNormSync(axes, epsilon, gamma_t is not None, beta_t is not None, masked=mask is not None)
        y = fn.apply(x_compute, *[w for w in (gamma_t, beta_t) if w is not None])
        mean, variance, count = fn.mean, fn.variance, fn.count
    elif mask is not None:
        y, mean, variance = reference.masked_batch_norm(x_compute, mask, gamma_t, beta_t, axes, epsilon)
        mean, variance = mean.data, variance.data
    elif form == "composite":
        y, mean, variance = reference.batch_norm_composite(x_compute, gamma_t, beta_t, axes, epsilon)
        mean, variance = mean.data, variance.data
    else:
        kind = fast.BatchNormFast if form == "fast" else reference.BatchNormClosedForm
        fn = kind(axes, epsilon, gamma_t is not None, beta_t is not None)
        y = fn.apply(x_compute, *[w for w in (gamma_t, beta_t) if w is not None])
        mean, variance = fn.mean, fn.variance
    mean, variance = mean.reshape(channels), variance.reshape(channels)
    if renorm is not None:
        y = _renormalized(y, gamma_b, beta_b, mean, variance, renorm, epsilon, broadcast_shape)
    if moving_mean is not None:
        if renorm is not None:
            _update_renorm(mean, variance, moving_mean, moving_variance, renorm, momentum, epsilon)
        else:
            if unbiased:
                variance = reference.unbiased_variance(variance, count)  # Eq. 4's m/(m-1)
            # Computed in the batch statistics' dtype, then stored in the moving statistics' own.
            new_mean, new_variance = reference.update_moving_statistics(
                moving_mean.data.astype(mean.dtype), moving_variance.data.astype(variance.dtype),
                mean, variance, momentum,
            )
            moving_mean.data[...] = new_mean
            moving_variance.data[...] = new_variance
    return y.astype(output_dtype)


def _checked_arguments(x: Tensor, feature_axis: int, gamma: Tensor | None, beta: Tensor | None,
                       moving_mean: Tensor | None, moving_variance: Tensor | None, mask: Tensor | None,
                       renorm: Renorm | None, training: bool, momentum: float, unbiased: bool, form: str | None,
                       synchronized: bool) -> tuple[str, int]:
    """Refuse arguments that batch_norm cannot use, before anything is computed or updated.
    Returns (the form to run, m: the values per channel in this process)."""
    channels = x.shape[feature_axis]
    weights = [("gamma", gamma), ("beta", beta), ("moving_mean", moving_mean), ("moving_variance", moving_variance)]
    for name, weight in weights + ([] if renorm is None else list(zip(Renorm._fields[:3], renorm))):
        if weight is not None and weight.shape != (channels,):
            raise ValueError(
                f"batch_norm: {name} has shape {weight.shape}, expected ({channels},) for "
                f"input shape {x.shape} with feature axis {feature_axis}"
            )
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"batch_norm: training must be True or False, got {training!r}")
    form = _BatchNormFormSetting.form if form is None else form
    _check_form(form, "batch_norm")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
        raise ValueError(f"batch_norm: momentum must be a number in [0, 1], got {momentum!r}")
    if (moving_mean is None) != (moving_variance is None):
        raise ValueError("batch_norm: give both moving_mean and moving_variance, or neither")
    if unbiased and (mask is not None or renorm is not None):
        raise ValueError(
            "batch_norm: unbiased=True (PyTorch's convention) cannot be combined with a mask or "
            "renorm, which follow Keras's biased statistics"
        )
    count = math.prod(n for i, n in enumerate(x.shape) if i != feature_axis)
    if training and count < 2 and mask is None and not synchronized:  # synchronized: the global m counts
        raise ValueError(
            f"batch_norm: batch statistics need more than one value per channel when "
            f"training; input shape {x.shape} with feature axis {feature_axis} has {count}"
        )
    if not training and moving_mean is None:
        raise ValueError("batch_norm: inference (training=False) needs moving_mean and moving_variance")
    return form, count


def _renormalized(x_hat: Tensor, gamma: Tensor | None, beta: Tensor | None, mean: Any, variance: Any,
                  renorm: Renorm, epsilon: float, broadcast_shape: tuple[int, ...]) -> Tensor:
    """Batch Renormalization's output gamma * (x_hat * r + d) + beta, r and d from the state
    before this batch's update (as Keras orders it)."""
    r, d = reference.renorm_correction(
        mean, variance, renorm.renorm_mean.data.astype(mean.dtype), renorm.renorm_stddev.data.astype(mean.dtype),
        epsilon, renorm.clipping or {},  # None: no clipping
    )
    return reference.renorm_transform(x_hat, gamma, beta, r.reshape(broadcast_shape), d.reshape(broadcast_shape))


def _update_renorm(mean: Any, variance: Any, moving_mean: Tensor, moving_variance: Tensor, renorm: Renorm,
                   momentum: float, epsilon: float) -> None:
    """Keras's five renorm updates, in place, each stored in its weight's own dtype."""
    weights = (renorm.renorm_mean, renorm.renorm_stddev, moving_mean, renorm.moving_stddev)
    new = reference.update_renorm_statistics(mean, variance, *[w.data.astype(mean.dtype) for w in weights],
                                             epsilon, momentum, renorm.momentum)
    for weight, value in zip(weights + (moving_variance,), new):
        weight.data[...] = value


def _over_merged_axes(x: Tensor, feature_axes: tuple[int, ...], mask: Any, *weights: Any, **options: Any) -> Tensor:
    """batch_norm with several feature axes: the feature axes are moved last and merged into one,
    the weights (of the feature axes' shape) flattened to match, and the result put back.

    The moving statistics are flattened as views, so their in-place updates reach the weights.
    """
    others = tuple(i for i in range(x.ndim) if i not in feature_axes)
    order = others + feature_axes
    feature_shape = tuple(x.shape[i] for i in feature_axes)
    moved_shape = tuple(x.shape[i] for i in order)
    merged_shape = moved_shape[:len(others)] + (math.prod(feature_shape),)
    gamma, beta, moving_mean, moving_variance, renorm = weights
    state = {"moving_mean": moving_mean, "moving_variance": moving_variance}
    if renorm is not None:
        state.update((name, getattr(renorm, name)) for name in Renorm._fields[:3])
    for name, weight in [("gamma", gamma), ("beta", beta), *state.items()]:
        if weight is not None and weight.shape != feature_shape:
            raise ValueError(
                f"batch_norm: {name} has shape {weight.shape}, expected {feature_shape} for input "
                f"shape {x.shape} with feature axes {feature_axes}"
            )
    # The statistics as flat copies, updated by the call and then written back.
    flat = {name: None if w is None else Tensor._make(w.data.reshape(-1).copy()) for name, w in state.items()}
    if renorm is not None:
        renorm = renorm._replace(**{name: flat[name] for name in Renorm._fields[:3]})
    y = _batch_norm(
        x.transpose(order).reshape(merged_shape), None if gamma is None else gamma.reshape(-1),
        None if beta is None else beta.reshape(-1), flat["moving_mean"], flat["moving_variance"], len(others),
        None if mask is None else mask.transpose(order).reshape(merged_shape), renorm, **options,
    )
    for name, weight in state.items():
        if weight is not None:
            weight.data[...] = flat[name].data.reshape(feature_shape)
    return y.reshape(moved_shape).transpose(tuple(np.argsort(order)))


def _mask_weights(mask: Any, x: Tensor) -> Tensor:
    """Keras's mask as a bool Tensor of x's shape: one axis fewer than x, broadcast along the last."""
    xp = backend.get_array_module(x.data)
    array = mask.data if isinstance(mask, Tensor) else mask
    array = backend.to_backend(array if backend.is_array(array) else np.asarray(array), x.backend)
    if array.ndim != x.ndim - 1:
        raise ValueError(
            "batch_norm: the mask must have one axis fewer than the input, as in Keras; got "
            f"mask shape {tuple(array.shape)} for input shape {x.shape}"
        )
    try:
        expanded = xp.broadcast_to(array[..., None], x.shape)
    except ValueError:
        raise ValueError(
            f"batch_norm: mask shape {tuple(array.shape)} does not fit input shape {x.shape}: it must "
            f"be broadcastable to the input's shape without its last axis, {x.shape[:-1]}"
        ) from None
    return Tensor._make(expanded.astype(bool))


def check_epsilon(epsilon: Any, dtype: Any, caller: str) -> None:
    """Refuse an epsilon that is not a finite number > 0 in `dtype`: 0 or less gives NaN on a
    constant feature, and 1e-50 is 0 in float32."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating, np.integer)):
        raise ValueError(f"{caller}: epsilon must be a number > 0, got {epsilon!r}")
    if not (math.isfinite(epsilon) and epsilon > 0 and np.dtype(dtype).type(epsilon) > 0):
        raise ValueError(
            f"{caller}: epsilon must be a finite number > 0 that {np.dtype(dtype)} can hold "
            f"(at least {np.finfo(dtype).smallest_subnormal:.3g}), got {epsilon!r}"
        )


def _feature_axes(axis: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """axis (an int, or a tuple or list of ints) as sorted, non-negative, distinct feature axes."""
    if type(axis) is int and -len(shape) <= axis < len(shape):  # the common case, on every call
        return (axis % len(shape),)
    several = isinstance(axis, (tuple, list))
    for each in (axis if several else [axis]):
        if isinstance(each, bool) or not isinstance(each, (int, np.integer)):
            raise TypeError(f"batch_norm: axis must be an int or a tuple of ints, got {axis!r}")
        if not -len(shape) <= each < len(shape):
            raise ValueError(
                f"batch_norm: axis {axis} is out of range for input shape {shape} ({len(shape)} axes)"
            )
    axes = tuple(sorted({int(each) % len(shape) for each in (axis if several else [axis])}))
    if several and (len(axes) != len(axis) or not axes or len(axes) == len(shape)):
        raise ValueError(
            f"batch_norm: axis {axis} must name distinct axes, at least one and not all of the "
            f"{len(shape)} axes of input shape {shape}"
        )
    return axes

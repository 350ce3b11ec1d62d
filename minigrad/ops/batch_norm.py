"""The reference BatchNorm: the equations of the paper and of the Keras BatchNormalization guide.

Each equation is here once, labelled with the guide's number, and runs on arrays and Tensors
alike. The guide numbers two equations "Eq. 3"; minigrad calls them Eq. 3a (the batch
variance) and Eq. 3b (the population mean).

    Eq. 2, Eq. 3a   batch_moments             mu_B, and the biased sigma_B^2 from centred values
    Eq. 1           normalize                 x_hat = (x - mu) / sqrt(var + eps)
                    scale_and_shift           y = gamma x_hat + beta
    inference       batch_norm_inference      Eq. 1 with the population (or moving) statistics
    Eq. 3b, Eq. 4   population_statistics     E[x] = E_B[mu_B], Var[x] = m/(m-1) E_B[sigma_B^2]
                    (with unbiased_variance and cumulative_momentum, their running form)
    Eq. 5, Eq. 6    update_moving_statistics  moving = moving * momentum + batch * (1 - momentum)
    paper, Sec. 3   closed_form_backward      dl/dx_hat, dl/dvar, dl/dmu, dl/dx, dl/dgamma, dl/dbeta
    masks           channel_sums, combine_moments   Eq. 2 and 3a over the unmasked positions only
    renorm          renorm_correction, renorm_transform, update_renorm_statistics
                                              Batch Renormalization (Ioffe 2017), as Keras runs it

Two training forms are built from them: BatchNormClosedForm (these equations forward, the
paper's closed form backward) and batch_norm_composite (these equations in Tensor operations,
differentiated by the engine). The layer trains with neither by default: it runs
minigrad.ops.batch_norm_fast, which restates these equations for speed and is tested against
them. mg.nn.batch_norm_form("closed_form") trains with the equations here instead.

`axes` are the reduction axes (every axis but the feature axis), so a mini-batch of one
feature holds m = the product of those axes' sizes values. gamma, beta and the statistics come
in broadcast shape (size 1 on the reduced axes). The layer around all this (feature axis,
dtypes, argument checks) is minigrad.nn.functional.batch_norm.
"""

from __future__ import annotations

import math
from typing import Any

from minigrad import backend, ops
from minigrad.autograd import Function, is_grad_enabled
from minigrad.tensor import Tensor

# Keras's backend.epsilon(): added to the count of unmasked values, so that a fully masked
# batch gives a mean and variance of 0 rather than 0/0.
MASK_EPSILON = 1e-7


# ---- The training transform -------------------------------------------------------------------

def batch_moments(x: Any, axes: tuple[int, ...]) -> tuple[Any, Any, Any]:
    """Eq. 2 and Eq. 3a: (batch mean, x - mean, biased batch variance), on arrays or Tensors."""
    mean = x.mean(axis=axes, keepdims=True)  # Eq. 2: mu_B = (1/m) sum_i x_i
    centred = x - mean
    # Eq. 3a: sigma_B^2 = (1/m) sum_i (x_i - mu_B)^2, biased (divide by m) and taken from the
    # centred values: E[x^2] - E[x]^2 cancels catastrophically when |mean| >> spread.
    variance = (centred * centred).mean(axis=axes, keepdims=True)
    return mean, centred, variance


def normalize(centred: Any, variance: Any, epsilon: float) -> tuple[Any, Any]:
    """Eq. 1: x_hat = (x - mu) / sqrt(var + eps). Returns (1 / sqrt(var + eps), x_hat)."""
    inv_std = (variance + epsilon) ** -0.5
    return inv_std, centred * inv_std


def scale_and_shift(x_hat: Any, gamma: Any, beta: Any) -> Any:
    """y = gamma * x_hat + beta; gamma or beta is None when scale or center is off."""
    y = x_hat if gamma is None else x_hat * gamma
    return y if beta is None else y + beta


def batch_norm_composite(
    x: Tensor, gamma: Tensor | None, beta: Tensor | None, axes: tuple[int, ...], epsilon: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The training transform in Tensor operations, differentiated by the engine.

    Returns (y, batch mean, batch variance).
    """
    mean, centred, variance = batch_moments(x, axes)
    _, x_hat = normalize(centred, variance, epsilon)
    return scale_and_shift(x_hat, gamma, beta), mean, variance


def closed_form_backward(grad: Any, gamma: Any, centred: Any, inv_std: Any, x_hat: Any,
                         axes: tuple[int, ...], has_gamma: bool, has_beta: bool) -> tuple[Any, ...]:
    """The paper's backward pass (Section 3), on arrays or Tensors; grad is dl/dy.

    Returns (dl/dx, [dl/dgamma], [dl/dbeta]), the last two in broadcast shape when present.
    """
    m = math.prod(centred.shape[i] for i in axes)

    def total(t: Any) -> Any:  # sum_i over the mini-batch of one feature
        return t.sum(axis=axes, keepdims=True)

    d_x_hat = grad if gamma is None else grad * gamma  # dl/dx_hat = dl/dy * gamma
    # dl/dvar = sum_i dl/dx_hat_i * (x_i - mu) * (-1/2) * (var + eps)^(-3/2)
    d_variance = total(d_x_hat * centred) * -0.5 * inv_std**3
    # dl/dmu = sum_i dl/dx_hat_i * (-1/sqrt(var + eps)) + dl/dvar * sum_i -2 (x_i - mu) / m
    d_mean = total(d_x_hat * -inv_std) + d_variance * total(centred * -2.0) / m
    # dl/dx_i = dl/dx_hat_i / sqrt(var + eps) + dl/dvar * 2 (x_i - mu) / m + dl/dmu / m
    d_x = d_x_hat * inv_std + d_variance * centred * (2.0 / m) + d_mean / m
    grads = [d_x]
    if has_gamma:
        grads.append(total(grad * x_hat))  # dl/dgamma = sum_i dl/dy_i * x_hat_i
    if has_beta:
        grads.append(total(grad))  # dl/dbeta = sum_i dl/dy_i
    return tuple(grads)


class BatchNormFunction(Function):
    """What the training Functions share: their settings, and the backward that create_graph runs.

    Inputs: x, then gamma (if has_gamma), then beta (if has_beta), both in broadcast shape.
    After forward, `mean` and `variance` hold the batch statistics (arrays) for the moving
    averages.
    """

    def __init__(self, axes: tuple[int, ...], epsilon: float, has_gamma: bool, has_beta: bool):
        self.axes = axes
        self.epsilon = epsilon
        self.has_gamma = has_gamma
        self.has_beta = has_beta

    def _gamma_beta(self, affine: tuple[Any, ...]) -> tuple[Any, Any]:
        gamma = affine[0] if self.has_gamma else None
        beta = affine[-1] if self.has_beta else None
        return gamma, beta

    def backward_in_graph(self, grad: Tensor) -> tuple[Tensor, ...]:
        """closed_form_backward on Tensors, with the statistics recomputed from x in the graph.

        Arrays saved by forward are constants to the engine, and 1/sqrt(var + eps) and x_hat
        taken as constants give right first derivatives but wrong second ones.
        """
        x = self.inputs[0]
        gamma, _ = self._gamma_beta(self.inputs[1:])
        _, centred, variance = batch_moments(x, self.axes)
        inv_std, x_hat = normalize(centred, variance, self.epsilon)
        return closed_form_backward(grad, gamma, centred, inv_std, x_hat, self.axes,
                                    self.has_gamma, self.has_beta)


class BatchNormClosedForm(BatchNormFunction):
    """The training transform by the reference equations, with the paper's closed-form backward.

    forward: batch_moments, normalize, scale_and_shift on arrays. backward: closed_form_backward
    on the saved arrays, or, with create_graph=True, on Tensors recomputed in the graph.
    """

    def forward(self, x, *affine):
        gamma, beta = self._gamma_beta(affine)
        self.mean, self.centred, self.variance = batch_moments(x, self.axes)
        self.inv_std, self.x_hat = normalize(self.centred, self.variance, self.epsilon)
        return scale_and_shift(self.x_hat, gamma, beta)

    def backward(self, grad):
        if is_grad_enabled():  # create_graph=True
            return self.backward_in_graph(grad)
        gamma, _ = self._gamma_beta(self.inputs[1:])
        grads = closed_form_backward(grad.data, None if gamma is None else gamma.data, self.centred,
                                     self.inv_std, self.x_hat, self.axes, self.has_gamma, self.has_beta)
        return tuple(Tensor._make(g) for g in grads)


# ---- Inference --------------------------------------------------------------------------------

def batch_norm_inference(x: Any, mean: Any, variance: Any, gamma: Any, beta: Any, epsilon: float) -> Any:
    """Eq. 1 with the population (or moving) statistics, then the scale and shift.

    In inference the layer is a fixed affine map of x: mean and variance are constants.
    """
    _, x_hat = normalize(x - mean, variance, epsilon)
    return scale_and_shift(x_hat, gamma, beta)


# ---- Population statistics: Eq. 3b and Eq. 4 ----------------------------------------------------

def unbiased_variance(variance: Any, m: int) -> Any:
    """Eq. 4's correction: m/(m-1) * sigma_B^2, the unbiased estimate from a batch of m values."""
    return variance * (m / (m - 1))


def population_statistics(batch_means: Any, batch_variances: Any, m: int) -> tuple[Any, Any]:
    """Eq. 3b and Eq. 4: the statistics inference uses, from every training batch's own.

    batch_means and batch_variances hold the batches' mu_B and sigma_B^2 stacked on axis 0;
    m is the batch size. Returns (E[x], Var[x]).
    """
    mean = batch_means.mean(axis=0)  # Eq. 3b: E[x] = E_B[mu_B]
    variance = unbiased_variance(batch_variances.mean(axis=0), m)  # Eq. 4: m/(m-1) E_B[sigma_B^2]
    return mean, variance


def cumulative_momentum(batches_seen: int) -> float:
    """The momentum under which Eq. 5 and 6 keep Eq. 3b and 4 exactly (the layer's momentum=None).

    At the n-th batch, moving * (n-1)/n + batch * 1/n turns the average of n-1 batch values
    into the average of n: E_B[mu_B], and E_B[sigma_B^2] (times m/(m-1) if the moving variance
    is fed unbiased_variance). batches_seen is n - 1.
    """
    return batches_seen / (batches_seen + 1)


# ---- Moving averages: Eq. 5 and Eq. 6 -----------------------------------------------------------

def update_moving_statistics(moving_mean: Any, moving_variance: Any, mean: Any, variance: Any,
                             momentum: float) -> tuple[Any, Any]:
    """Eq. 5 and 6: the new (moving mean, moving variance) after one batch of (mean, variance).

    Keras's convention: momentum is the weight of the old average (PyTorch's is 1 - this).
    """
    new_mean = moving_mean * momentum + mean * (1.0 - momentum)  # Eq. 5
    new_variance = moving_variance * momentum + variance * (1.0 - momentum)  # Eq. 6
    return new_mean, new_variance


# ---- Masked statistics: Eq. 2 and Eq. 3a over the unmasked positions -----------------------------

def channel_sums(x: Tensor, mask: Tensor, axes: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """What one part of a batch contributes to its statistics, per channel (broadcast shape):
    (count, sum, sum of squared deviations from this part's own mean), over the positions
    where mask (bool, in x's shape) is True. Tensors, differentiated by the engine.

    Masked positions are dropped with keep_where, as Keras's ops.where: multiplying by 0
    would turn a NaN or inf in the padding into NaN statistics.
    """
    keep = mask.data
    count = mask.astype(x.dtype).sum(axis=axes, keepdims=True)
    total = ops.keep_where(x, keep).sum(axis=axes, keepdims=True)
    deviation = ops.keep_where(x - total / (count + MASK_EPSILON), keep)
    return count, total, (deviation * deviation).sum(axis=axes, keepdims=True)


def combine_moments(parts: list[tuple[Any, Any, Any]], epsilon: float = MASK_EPSILON) -> tuple[Any, Any]:
    """Eq. 2 and Eq. 3a from the channel_sums of several parts of one batch: (mean, variance).

    The one place where parts are combined: a single process passes one part (masks);
    synchronized BatchNorm on several processes passes every process's part (arrays, float64,
    minigrad.ops.batch_norm_sync). The squared deviations are combined about the overall mean
    (Chan, Golub and LeVeque's pairwise rule), never as E[x^2] - E[x]^2, which cancels
    catastrophically. epsilon is added to each count: Keras's MASK_EPSILON for masks, so that
    a fully masked batch gives 0 and 0; 0 for exact statistics (give only parts with values).
    Works on Tensors (differentiated by the engine) and on arrays alike.
    """
    count = sum(part[0] for part in parts)
    mean = sum(part[1] for part in parts) / (count + epsilon)  # Eq. 2
    squared = 0.0
    for part_count, part_total, part_squared in parts:
        # Moving a part's squared deviations from its own mean to the overall mean adds
        # count * (its mean - overall mean)^2 (zero for a single part).
        shift = part_total / (part_count + epsilon) - mean
        squared = squared + part_squared + part_count * shift * shift
    return mean, squared / (count + epsilon)  # Eq. 3a, biased


def masked_batch_norm(x: Tensor, mask: Tensor, gamma: Tensor | None, beta: Tensor | None,
                      axes: tuple[int, ...], epsilon: float) -> tuple[Tensor, Tensor, Tensor]:
    """The training transform with Keras's mask (bool, in x's shape): statistics over the
    unmasked positions, every position normalized with them. Returns (y, batch mean, batch
    variance), as Tensors.
    """
    mean, variance = combine_moments([channel_sums(x, mask, axes)])
    _, x_hat = normalize(x - mean, variance, epsilon)
    return scale_and_shift(x_hat, gamma, beta), mean, variance


# ---- Batch Renormalization (Ioffe 2017, arXiv 1702.03275), as Keras 3 runs it -------------------

def renorm_correction(mean: Any, variance: Any, renorm_mean: Any, renorm_stddev: Any, epsilon: float,
                      clipping: dict) -> tuple[Any, Any]:
    """Batch Renormalization's (r, d), on arrays: the batch statistics measured against the
    moving ones that renorm trains with.

        sigma_B = sqrt(sigma_B^2 + eps)
        r = sigma_B / renorm_stddev,  clipped to [rmin, rmax]
        d = (mu_B - renorm_mean) / renorm_stddev,  clipped to [-dmax, dmax]

    renorm_stddev is taken as at least sqrt(eps), Keras's guard against dividing by ~0 early
    in training. clipping holds any of "rmin", "rmax", "dmax"; a missing key does not clip.
    r and d are constants to the gradient (the paper's stop_gradient): they are arrays here.
    """
    xp = backend.get_array_module(mean)
    stddev = xp.sqrt(variance + epsilon)
    renorm_stddev = xp.maximum(renorm_stddev, epsilon ** 0.5)
    r = stddev / renorm_stddev
    d = (mean - renorm_mean) / renorm_stddev
    if clipping.get("rmin") is not None:
        r = xp.maximum(r, clipping["rmin"])
    if clipping.get("rmax") is not None:
        r = xp.minimum(r, clipping["rmax"])
    if clipping.get("dmax") is not None:
        d = xp.clip(d, -clipping["dmax"], clipping["dmax"])
    return r, d


def renorm_transform(x_hat: Tensor, gamma: Tensor | None, beta: Tensor | None, r: Any, d: Any) -> Tensor:
    """y = gamma * (x_hat * r + d) + beta, with r and d constants (arrays in broadcast shape)."""
    return scale_and_shift(x_hat * r + d, gamma, beta)


def update_renorm_statistics(mean: Any, variance: Any, renorm_mean: Any, renorm_stddev: Any,
                             moving_mean: Any, moving_stddev: Any, epsilon: float, momentum: float,
                             renorm_momentum: float) -> tuple[Any, Any, Any, Any, Any]:
    """Keras's renorm updates after one batch, on arrays. Returns the new (renorm_mean,
    renorm_stddev, moving_mean, moving_stddev, moving_variance).

    renorm_mean and renorm_stddev (what r and d compare against) average with renorm_momentum;
    moving_mean and moving_stddev (what inference uses) with momentum, as Eq. 5 does. The
    moving variance follows from the moving stddev: max(moving_stddev^2 - eps, 0), since
    inference adds eps back.
    """
    xp = backend.get_array_module(mean)
    stddev = xp.sqrt(variance + epsilon)
    new_renorm_mean, new_renorm_stddev = update_moving_statistics(renorm_mean, renorm_stddev, mean,
                                                                  stddev, renorm_momentum)
    new_moving_mean, new_moving_stddev = update_moving_statistics(moving_mean, moving_stddev, mean,
                                                                  stddev, momentum)
    moving_variance = xp.maximum(new_moving_stddev * new_moving_stddev - epsilon, 0)
    return new_renorm_mean, new_renorm_stddev, new_moving_mean, new_moving_stddev, moving_variance

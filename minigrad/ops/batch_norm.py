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

from minigrad.autograd import Function, is_grad_enabled
from minigrad.tensor import Tensor


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

"""Batch Normalization's training transform (the paper's Algorithm 1), forward beside backward.

`axes` are the reduction axes (every axis but the feature axis), so a mini-batch of one
feature holds m = the product of those axes' sizes values. gamma and beta come in broadcast
shape (size 1 on the reduced axes), and the statistics are kept in that shape too.

The equations live here once each, written so that they run on arrays and Tensors alike:
batch_moments (Eq. 2 and 3), normalize (Eq. 1), scale_and_shift. Two forms use them:

- batch_norm_composite: the equations in Tensor operations, differentiated by the engine.
- BatchNormTrain (the form the layer uses): the equations on arrays in forward, and the
  paper's closed-form backward (dl/dx_hat, dl/dvar, dl/dmu, dl/dx, dl/dgamma, dl/dbeta).

The layer around these (feature axis, dtypes, moving statistics) is minigrad.nn.functional.
"""

from __future__ import annotations

import math
from typing import Any

from minigrad.autograd import Function, is_grad_enabled
from minigrad.tensor import Tensor


def batch_moments(x: Any, axes: tuple[int, ...]) -> tuple[Any, Any, Any]:
    """Eq. 2 and 3: (batch mean, x - mean, biased batch variance), on arrays or Tensors."""
    mean = x.mean(axis=axes, keepdims=True)  # Eq. 2: mu_B = (1/m) sum_i x_i
    centred = x - mean
    # Eq. 3: sigma_B^2 = (1/m) sum_i (x_i - mu_B)^2, biased (divide by m) and taken from the
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
    """The training transform in Tensor operations. Returns (y, batch mean, batch variance)."""
    mean, centred, variance = batch_moments(x, axes)
    _, x_hat = normalize(centred, variance, epsilon)
    return scale_and_shift(x_hat, gamma, beta), mean, variance


class BatchNormTrain(Function):
    """The training transform with the paper's closed-form backward.

    Inputs: x, then gamma (if has_gamma), then beta (if has_beta), both in broadcast shape.
    After forward, `mean` and `variance` hold the batch statistics (arrays, broadcast shape)
    for the moving averages.
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

    def forward(self, x, *affine):
        gamma, beta = self._gamma_beta(affine)
        self.mean, self.centred, self.variance = batch_moments(x, self.axes)
        self.inv_std, self.x_hat = normalize(self.centred, self.variance, self.epsilon)
        return scale_and_shift(self.x_hat, gamma, beta)

    def backward(self, grad):
        x = self.inputs[0]
        gamma, _ = self._gamma_beta(self.inputs[1:])
        if is_grad_enabled():
            # create_graph=True: recompute the statistics from x inside the graph. The saved
            # arrays are constants to the engine, and 1/sqrt(var + eps) and x_hat taken as
            # constants give right first derivatives but wrong second ones.
            _, centred, variance = batch_moments(x, self.axes)
            inv_std, x_hat = normalize(centred, variance, self.epsilon)
            return closed_form_backward(grad, gamma, centred, inv_std, x_hat, self.axes,
                                        self.has_gamma, self.has_beta)
        # First order only: the same equations on the saved arrays, with no graph to record.
        grads = closed_form_backward(grad.data, None if gamma is None else gamma.data, self.centred,
                                     self.inv_std, self.x_hat, self.axes, self.has_gamma, self.has_beta)
        return tuple(Tensor._make(g) for g in grads)


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

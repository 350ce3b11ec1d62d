"""Batch Normalization's training transform for speed: the fast kernels the layer runs.

This module restates the reference equations of minigrad.ops.batch_norm (the paper's, and the
Keras BatchNormalization guide's Eq. 1, 2 and 3a, the scale and shift, and the closed-form
backward) on arrays only and for first derivatives only, arranged to pass over memory as few
times as they can, and on CuPy fused into one GPU kernel per pass. Read minigrad.ops.batch_norm
to learn the equations; read this to see how a framework makes them fast.
tests/test_batch_norm_kernels.py checks every function here against the formula it restates.

BatchNormFast, the Function that F.batch_norm(form="fast") (the default) applies, runs
fast_forward, and fast_backward at first order; with create_graph=True its backward is
closed_form_backward of minigrad.ops.batch_norm in the graph, so second derivatives stay right.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from minigrad import backend
from minigrad.autograd import is_grad_enabled
from minigrad.ops import batch_norm as reference
from minigrad.tensor import Tensor


class BatchNormFast(reference.BatchNormFunction):
    """The training transform by the fast kernels.

    Inputs: x, then gamma (if has_gamma), then beta (if has_beta), both in broadcast shape.
    After forward, `mean` and `variance` hold the batch statistics (arrays of shape (1, C, 1))
    for the moving averages.
    """

    def forward(self, x, *affine):
        gamma, beta = self._gamma_beta(affine)
        (self.feature_axis,) = set(range(x.ndim)) - set(self.axes)
        y, self.centred, self.mean, self.variance, self.inv_std = fast_forward(
            x, gamma, beta, self.feature_axis, self.epsilon
        )
        return y

    def backward(self, grad):
        if is_grad_enabled():  # create_graph=True: the kernels record no graph
            return self.backward_in_graph(grad)
        gamma, _ = self._gamma_beta(self.inputs[1:])
        # On the graph's last use, dl/dx goes into the saved x - mu: one array fewer.
        d_x, d_gamma, d_beta = fast_backward(grad.data, self.centred, self.inv_std,
                                             None if gamma is None else gamma.data, self.feature_axis,
                                             out=self.centred if self.last_use else None)
        grads = [d_x]
        if self.has_gamma:
            grads.append(d_gamma.reshape(gamma.shape))
        if self.has_beta:
            grads.append(d_beta.reshape(self.inputs[-1].shape))
        return tuple(Tensor._make(g) for g in grads)


# ---- The fast kernels ------------------------------------------------------------------------
# The reference equations again, on arrays only and for first derivatives only, arranged for
# speed. Every batch axis is folded into a (before, C, after) view, so each statistic is one
# reduction over axes (0, 2). x_hat is never stored: the backward needs only x - mu and
# 1/sqrt(var + eps). On NumPy the elementwise steps write in place (out=) instead of making
# temporaries; on CuPy each is one fused kernel. tests/test_batch_norm_kernels.py checks each
# function against the plain formula it restates.


def three_axes(a: Any, feature_axis: int) -> Any:
    """a as a (before, C, after) array (a view when a is contiguous); C is the feature axis."""
    before = math.prod(a.shape[:feature_axis])
    return a.reshape(before, a.shape[feature_axis], -1)


def channel_sum(a: Any, b: Any = None, accumulate: Any = None) -> Any:
    """sum_i a_i, or sum_i a_i * b_i, per channel of (before, C, after) arrays: shape (1, C, 1).

    accumulate=np.float64 adds up in float64 and returns the sum in a's dtype: the forward's
    statistics need it, because a float32 running sum of a million values near 1e4 is off by
    a few hundredths of itself, and Eq. 3a then measures that error as variance.
    """
    if backend.get_array_module(a) is not np:
        kernels = _cupy_kernels()
        if b is None:
            total = a.sum(axis=(0, 2), dtype=accumulate)
        else:
            dot = kernels.channel_dot if accumulate is None else kernels.channel_dot_float64
            total = dot(a, b, axis=(0, 2))
    elif b is None:
        total = np.einsum("icj->c", a, dtype=accumulate)  # one pass, faster than a.sum(axis=(0, 2))
    else:
        total = np.einsum("icj,icj->c", a, b, dtype=accumulate)  # one pass, no a * b temporary
    return total.astype(a.dtype, copy=False).reshape(1, -1, 1)


def shift_and_scale(centred: Any, scale: Any, shift: Any) -> Any:
    """centred * scale + shift (shift may be None), in one pass on CuPy, in place on NumPy."""
    if backend.get_array_module(centred) is not np:
        if shift is None:
            return centred * scale
        return _cupy_kernels().shift_and_scale(centred, scale, shift)
    y = np.multiply(centred, scale)
    if shift is not None:
        np.add(y, shift, out=y)
    return y


def input_gradient(grad: Any, centred: Any, k: Any, mean_grad: Any, q: Any, out: Any = None) -> Any:
    """k * (grad - mean_grad - centred * q): dl/dx of the fast backward, without temporaries.

    out, when given, receives the result; it may be `centred` itself.
    """
    if backend.get_array_module(grad) is not np:
        arguments = (grad, centred, k, mean_grad, q) + (() if out is None else (out,))
        return _cupy_kernels().input_gradient(*arguments)  # an output passed last is written in place
    d_x = np.multiply(centred, q, out=out)
    np.add(d_x, mean_grad, out=d_x)
    np.subtract(grad, d_x, out=d_x)
    np.multiply(d_x, k, out=d_x)
    return d_x


def fast_forward(x: Any, gamma: Any, beta: Any, feature_axis: int, epsilon: float):
    """Eq. 2, Eq. 3a, Eq. 1 and the scale and shift, in four passes over x.

    gamma and beta are None or in broadcast shape. Returns (y, centred, mean, variance,
    inv_std): y in x's shape, centred as (before, C, after), the rest as (1, C, 1). The same
    values as batch_moments, normalize and scale_and_shift of minigrad.ops.batch_norm, up to rounding.
    """
    x3 = three_axes(x, feature_axis)
    m = x3.shape[0] * x3.shape[2]
    mean = channel_sum(x3, accumulate=np.float64) / m  # Eq. 2
    centred = x3 - mean
    variance = channel_sum(centred, centred, accumulate=np.float64) / m  # Eq. 3a, from centred values
    inv_std = 1.0 / backend.get_array_module(x).sqrt(variance + epsilon)  # Eq. 1's 1/sqrt(var + eps)
    # gamma * x_hat + beta = (x - mu) * (gamma / sqrt(var + eps)) + beta: x_hat is never stored.
    scale = inv_std if gamma is None else inv_std * gamma.reshape(inv_std.shape)
    y = shift_and_scale(centred, scale, None if beta is None else beta.reshape(inv_std.shape))
    return y.reshape(x.shape), centred, mean, variance, inv_std


def fast_backward(grad: Any, centred: Any, inv_std: Any, gamma: Any, feature_axis: int, out: Any = None):
    """The paper's backward pass with dl/dvar and dl/dmu substituted into dl/dx, g = dl/dy:

        dl/dbeta  = sum_i g_i
        dl/dgamma = sum_i g_i x_hat_i = inv_std * sum_i g_i (x_i - mu)
        dl/dx_i   = gamma inv_std (g_i - mean(g) - (x_i - mu) inv_std^2 mean(g (x - mu)))

    (the dl/dmu term's sum_i (x_i - mu) is zero). Two reductions and one elementwise pass.
    Returns (dl/dx in grad's shape, dl/dgamma, dl/dbeta), the last two as (1, C, 1). With
    out=centred, dl/dx overwrites centred (the caller's last use of it).
    """
    g3 = three_axes(grad, feature_axis)
    m = g3.shape[0] * g3.shape[2]
    sum_g = channel_sum(g3)
    sum_g_centred = channel_sum(g3, centred)
    k = inv_std if gamma is None else gamma.reshape(inv_std.shape) * inv_std
    d_x = input_gradient(g3, centred, k, sum_g / m, inv_std * inv_std * sum_g_centred / m, out)
    return d_x.reshape(grad.shape), sum_g_centred * inv_std, sum_g


@functools.lru_cache(maxsize=None)
def _cupy_kernels() -> SimpleNamespace:
    """The fused CuPy kernels, compiled on first use (only on a machine with CuPy)."""
    cupy = backend.module("cupy")
    return SimpleNamespace(
        # sum_i a_i b_i over the reduced axes, without an a * b array in between.
        channel_dot=cupy.ReductionKernel("T a, T b", "T total", "a * b", "a + b", "total = a", "0",
                                         "minigrad_channel_dot"),
        # The same, adding up in float64 (for the forward's statistics).
        channel_dot_float64=cupy.ReductionKernel("T a, T b", "float64 total",
                                                 "(double)a * (double)b", "a + b", "total = a", "0",
                                                 "minigrad_channel_dot_float64"),
        shift_and_scale=cupy.ElementwiseKernel("T centred, T scale, T shift", "T y",
                                               "y = centred * scale + shift", "minigrad_shift_and_scale"),
        input_gradient=cupy.ElementwiseKernel("T g, T centred, T k, T mean_g, T q", "T d_x",
                                              "d_x = k * (g - mean_g - centred * q)", "minigrad_input_gradient"),
    )

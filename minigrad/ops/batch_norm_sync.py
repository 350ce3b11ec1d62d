"""Synchronized BatchNorm: the training transform over the union of every rank's rows.

With data parallelism each rank holds only its part of the batch. BatchNormSync makes each
rank normalize its rows exactly as one process would normalize the whole batch:

forward   each rank sums its rows per channel: count, sum and squared deviations from its own
          mean, in float64. The ranks gather all three (one message) and every rank combines
          them identically with combine_moments (minigrad.ops.batch_norm): the global mu_B and
          biased sigma_B^2, exact in float64 and bitwise the same on every rank. A rank with no
          rows adds nothing.
backward  dl/dx_i = gamma inv_std (g_i - sum(g)/M - (x_i - mu) inv_std^2 sum(g (x - mu))/M),
          the fast kernel's formula with the two sums and M taken over every rank (one
          all-reduce of 2 values per channel). So dl/dx is the gradient of the sum of all
          ranks' losses, as in PyTorch's SyncBatchNorm; dl/dgamma and dl/dbeta are this rank's
          own sums, and distributed.average_gradients then gives the gradient of the mean loss.

Only first derivatives: the collectives record no graph, so create_graph=True is an error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minigrad import backend, distributed
from minigrad.autograd import is_grad_enabled
from minigrad.ops import batch_norm as reference, batch_norm_fast as fast
from minigrad.tensor import Tensor

WHAT = "BatchNorm(synchronized=True)"


def three_axes(a: Any, feature_axis: int) -> Any:
    """a as (before, C, after); unlike fast.three_axes, also for a rank with no rows."""
    return a.reshape(math.prod(a.shape[:feature_axis]), a.shape[feature_axis], math.prod(a.shape[feature_axis + 1:]))


def float64_sum(a: Any, b: Any = None) -> Any:
    """sum_i a_i (or sum_i a_i b_i) per channel of (before, C, after) arrays, added up in float64
    and returned as float64, shape (C,): einsum on NumPy (one pass), a reduction on CuPy."""
    if backend.get_array_module(a) is not np:
        return (a if b is None else a * b).sum(axis=(0, 2), dtype=np.float64)
    if b is None:
        return np.einsum("icj->c", a, dtype=np.float64)
    return np.einsum("icj,icj->c", a, b, dtype=np.float64)


def like(values: Any, array: Any) -> Any:
    """Per-channel values (C,) on array's backend, in its dtype, as (1, C, 1)."""
    return backend.to_backend(values, backend.backend_of(array)).astype(array.dtype).reshape(1, -1, 1)


class BatchNormSync(reference.BatchNormFunction):
    """The training transform with statistics over every rank's rows (see the module docstring).

    After forward, `mean` and `variance` (shape (1, C, 1), x's dtype) are the global batch
    statistics, and `count` the global m, for the moving averages. masked=True (a mask was
    given on this rank) is refused on every rank, after the ranks have compared notes.
    """

    def __init__(self, axes: tuple[int, ...], epsilon: float, has_gamma: bool, has_beta: bool,
                 masked: bool = False) -> None:
        super().__init__(axes, epsilon, has_gamma, has_beta)
        self.masked = masked

    def forward(self, x, *affine):
        gamma, beta = self._gamma_beta(affine)
        xp = backend.get_array_module(x)
        (self.feature_axis,) = set(range(x.ndim)) - set(self.axes)
        x3 = three_axes(x, self.feature_axis)
        local_count = x3.shape[0] * x3.shape[2]
        total = float64_sum(x3)
        local_mean = total / max(local_count, 1)
        # Squared deviations from this rank's mean, added up in float64, as the one-process
        # fast kernel adds up its own (channel_sum(..., accumulate=np.float64)).
        rounded_mean = local_mean.astype(x.dtype)
        deviation = x3 - rounded_mean.reshape(1, -1, 1)
        # Taken from the mean rounded to x's dtype, m'; about the exact mean m they are
        # sum (x - m')^2 - n (m - m')^2.
        squared = float64_sum(deviation, deviation) - local_count * (local_mean - rounded_mean) ** 2
        counts = xp.full(total.shape, float(local_count))
        # (ranks, 3, C); every rank must agree on the shape and on whether a mask was given.
        parts = distributed.allgather(xp.stack([counts, total, squared]), WHAT, extra=(int(self.masked),))
        if self.masked:  # refused here, after the check, so that every rank refuses together
            raise ValueError(f"{WHAT}: a mask cannot be combined with statistics across processes yet; "
                             "pass the mask or synchronized=True, not both")
        self.count = int(parts[:, 0, 0].sum())
        if self.count < 2:
            raise ValueError(f"{WHAT}: batch statistics need more than one value per channel when "
                             f"training; all ranks together hold {self.count}")
        mean, variance = reference.combine_moments([tuple(p) for p in parts if p[0, 0] > 0], epsilon=0.0)
        self.mean, self.variance = like(mean, x), like(variance, x)
        self.centred = x3 - self.mean
        self.inv_std = 1.0 / xp.sqrt(self.variance + self.epsilon)
        scale = self.inv_std if gamma is None else self.inv_std * gamma.reshape(self.inv_std.shape)
        y = fast.shift_and_scale(self.centred, scale, None if beta is None else beta.reshape(scale.shape))
        return y.reshape(x.shape)

    def backward(self, grad):
        if is_grad_enabled():
            raise RuntimeError(f"{WHAT} across processes has first derivatives only: its statistics "
                               "come from collectives, which record no graph (create_graph=True)")
        gamma, _ = self._gamma_beta(self.inputs[1:])
        g3 = three_axes(grad.data, self.feature_axis)
        xp = backend.get_array_module(g3)
        sum_g, sum_g_centred = float64_sum(g3), float64_sum(g3, self.centred)
        sums = distributed.allreduce_sum(xp.stack([sum_g, sum_g_centred]), WHAT + " backward")
        global_g, global_g_centred = like(sums[0], g3), like(sums[1], g3)
        k = self.inv_std if gamma is None else gamma.data.reshape(self.inv_std.shape) * self.inv_std
        d_x = fast.input_gradient(g3, self.centred, k, global_g / self.count,
                                  self.inv_std * self.inv_std * global_g_centred / self.count)
        grads = [d_x.reshape(grad.shape)]
        if self.has_gamma:  # this rank's own sums: average_gradients adds the ranks' up
            grads.append((like(sum_g_centred, g3) * self.inv_std).reshape(gamma.shape))
        if self.has_beta:
            grads.append(like(sum_g, g3).reshape(self.inputs[-1].shape))
        return tuple(Tensor._make(g) for g in grads)

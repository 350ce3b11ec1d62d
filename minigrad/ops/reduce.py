"""Reductions: sum, mean and max over any set of axes."""

from __future__ import annotations

import math
from typing import Any

from minigrad import backend
from minigrad.autograd import Function
from minigrad.tensor import Tensor


def normalize_axes(axis: Any, shape: tuple[int, ...], op: str) -> tuple[int, ...]:
    """`axis` (None, an int or a tuple; negative allowed) as sorted non-negative axes."""
    ndim = len(shape)
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    normalized = []
    for a in axes:
        if not isinstance(a, int) and not hasattr(a, "__index__"):
            raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= int(a) < ndim:
            raise ValueError(
                f"{op}: axis {a} is out of range for a tensor of shape {shape} ({ndim} axes)"
            )
        normalized.append(int(a) % ndim)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{op}: axis {axis!r} names an axis twice")
    return tuple(sorted(normalized))


def _kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """`shape` with the reduced axes kept as size 1 (what keepdims=True gives)."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(Function):
    def __init__(self, axes: tuple[int, ...], keepdims: bool) -> None:
        self.axes = axes
        self.keepdims = keepdims

    def forward(self, x):
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        # Every summed element moved the sum one for one: copy the gradient back to each.
        shape = self.inputs[0].shape
        return (grad.reshape(_kept_shape(shape, self.axes)).broadcast_to(shape),)


class Max(Function):
    def __init__(self, axes: tuple[int, ...], keepdims: bool) -> None:
        self.axes = axes
        self.keepdims = keepdims

    def forward(self, x):
        return x.max(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        x = self.inputs[0]
        spread = grad.reshape(_kept_shape(x.shape, self.axes)).broadcast_to(x.shape)
        return (spread * Tensor._make(_first_argmax_mask(x.data, self.axes)),)


def _first_argmax_mask(x: Any, axes: tuple[int, ...]) -> Any:
    """1 at the first maximum of every slice over `axes`, 0 elsewhere (the arg-max as a mask).

    Ties send the whole gradient to one element, like PyTorch's max(dim) and its indices.
    """
    xp = backend.get_array_module(x)
    kept = [i for i in range(x.ndim) if i not in axes]
    order = kept + list(axes)
    moved = x.transpose(order)
    flat = moved.reshape(moved.shape[: len(kept)] + (-1,))
    winner = flat.argmax(axis=-1)[..., None]
    mask = (xp.arange(flat.shape[-1]) == winner).astype(x.dtype)
    inverse = [order.index(i) for i in range(x.ndim)]
    return mask.reshape(moved.shape).transpose(inverse)


def sum(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Sum over `axis` (None: every axis)."""
    return Sum(normalize_axes(axis, x.shape, "sum"), keepdims).apply(x)


def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Mean over `axis` (None: every axis): the sum divided by the number of values."""
    axes = normalize_axes(axis, x.shape, "mean")
    count = math.prod(x.shape[i] for i in axes)
    return Sum(axes, keepdims).apply(x) * (1.0 / count if count else float("nan"))


def max(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Maximum over `axis` (None: every axis); the gradient goes to the first arg-max."""
    axes = normalize_axes(axis, x.shape, "max")
    if x.size == 0:
        raise ValueError(f"max: cannot take the maximum of an empty tensor of shape {x.shape}")
    return Max(axes, keepdims).apply(x)

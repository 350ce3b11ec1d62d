"""Operations that move values around without changing them: reshape, transpose,
broadcast_to, indexing, and sum_to (the undoing of a broadcast)."""

from __future__ import annotations

from typing import Any

import numpy as np

from minigrad import backend
from minigrad.autograd import Function
from minigrad.tensor import Tensor


class Reshape(Function):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x):
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape shape {x.shape} ({x.size} elements) into {self.shape}"
            ) from None

    def backward(self, grad):
        return (grad.reshape(self.inputs[0].shape),)


class Transpose(Function):
    def __init__(self, axes: tuple[int, ...] | None) -> None:
        self.axes = axes

    def forward(self, x):
        if self.axes is None:
            self.axes = tuple(reversed(range(x.ndim)))
        if sorted(a % max(x.ndim, 1) for a in self.axes) != list(range(x.ndim)):
            raise ValueError(
                f"transpose: axes {self.axes} are not a permutation of the {x.ndim} axes "
                f"of shape {x.shape}"
            )
        return x.transpose(self.axes)

    def backward(self, grad):
        inverse = tuple(int(i) for i in np.argsort([a % grad.ndim for a in self.axes]))
        return (grad.transpose(inverse),)


class BroadcastTo(Function):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x):
        try:
            return backend.get_array_module(x).broadcast_to(x, self.shape)
        except ValueError:
            raise ValueError(
                f"broadcast_to: shape {x.shape} cannot be broadcast to {self.shape}"
            ) from None

    def backward(self, grad):
        return (sum_to(grad, self.inputs[0].shape),)


def sum_to(grad: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum `grad` down to `shape`: the gradient of broadcasting a `shape` operand up.

    A binary operation broadcasts its operands like NumPy; each operand's gradient must then
    add up every place its values were copied to, over the leading axes and over the axes
    where the operand had size 1.
    """
    if grad.shape == shape:
        return grad
    leading = grad.ndim - len(shape)
    stretched = tuple(
        leading + i for i, size in enumerate(shape) if size == 1 and grad.shape[leading + i] != 1
    )
    summed = grad.sum(axis=tuple(range(leading)) + stretched, keepdims=True)
    return summed.reshape(shape) if summed.shape != shape else summed


class GetItem(Function):
    """x[index]: the gradient goes back to the positions that were picked."""

    def __init__(self, index: Any) -> None:
        self.index = index

    def forward(self, x):
        self.index = _index_on(backend.get_array_module(x), self.index)
        return x[self.index]

    def backward(self, grad):
        return (ScatterAdd(self.index, self.inputs[0].shape).apply(grad),)


class ScatterAdd(Function):
    """zeros(shape) with `values` added at `index`: the gradient of indexing (and vice versa)."""

    def __init__(self, index: Any, shape: tuple[int, ...]) -> None:
        self.index = index
        self.shape = shape

    def forward(self, values):
        xp = backend.get_array_module(values)
        out = xp.zeros(self.shape, dtype=values.dtype)
        if _picks_each_position_once(self.index):
            out[self.index] = values
        else:  # integer arrays may pick a position twice: add once per pick
            backend.add_at(out, self.index, values)
        return out

    def backward(self, grad):
        return (GetItem(self.index).apply(grad),)


def _index_on(xp: Any, index: Any) -> Any:
    """The index with tensors and lists turned into arrays of the tensor's backend."""
    if isinstance(index, tuple):
        return tuple(_index_on(xp, part) for part in index)
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, list) or (xp is not np and isinstance(index, np.ndarray)):
        return xp.asarray(index)
    return index


def _picks_each_position_once(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return not any(hasattr(part, "dtype") and part.dtype.kind in "iu" for part in parts)


def reshape(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The same values in `shape` (one dimension may be -1)."""
    shape = tuple(int(n) for n in shape)
    if shape == x.shape:
        return x
    return Reshape(shape).apply(x)


def transpose(x: Tensor, axes: tuple[int, ...] | None = None) -> Tensor:
    """Permute the axes; None reverses them."""
    return Transpose(None if axes is None else tuple(int(a) for a in axes)).apply(x)


def broadcast_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """`x` repeated along new or size-1 axes to `shape`, like numpy.broadcast_to."""
    if x.shape == tuple(shape):
        return x
    return BroadcastTo(tuple(shape)).apply(x)


def getitem(x: Tensor, index: Any) -> Tensor:
    """x[index] with integers, slices, None, Ellipsis, boolean or integer arrays."""
    return GetItem(index).apply(x)

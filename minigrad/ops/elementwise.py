"""Elementwise functions of one tensor: exp, log, sqrt, abs, relu, sigmoid, tanh, keep_where
(numpy.where against 0), and a dtype cast."""

from __future__ import annotations

from typing import Any

import numpy as np

from minigrad import backend
from minigrad.autograd import Function
from minigrad.tensor import Tensor


class Exp(Function):
    keeps_output = True  # d exp(x)/dx = exp(x): reuse the result

    def forward(self, x):
        return backend.get_array_module(x).exp(x)

    def backward(self, grad):
        return (grad * self.output(),)


class Log(Function):
    def forward(self, x):
        return backend.get_array_module(x).log(x)

    def backward(self, grad):
        return (grad / self.inputs[0],)  # d log(x)/dx = 1/x


class Sqrt(Function):
    keeps_output = True  # d sqrt(x)/dx = 1 / (2 sqrt(x)): reuse the result

    def forward(self, x):
        return backend.get_array_module(x).sqrt(x)

    def backward(self, grad):
        return (grad / (self.output() * 2.0),)


class Abs(Function):
    def forward(self, x):
        return backend.get_array_module(x).abs(x)

    def backward(self, grad):
        # d|x|/dx = sign(x), taken as 0 at 0 (as in PyTorch); a constant of the graph.
        x = self.inputs[0].data
        return (grad * Tensor._make(backend.get_array_module(x).sign(x)),)


class ReLU(Function):
    def forward(self, x):
        return backend.get_array_module(x).maximum(x, 0)

    def backward(self, grad):
        # The slope is 1 where x > 0 and 0 elsewhere, at 0 included (as in PyTorch). It is a
        # constant of the graph: relu's second derivative is zero wherever it exists.
        x = self.inputs[0].data
        return (grad * Tensor._make((x > 0).astype(x.dtype)),)


class Sigmoid(Function):
    keeps_output = True  # d sigmoid(x)/dx = y (1 - y): reuse the result y

    def forward(self, x):
        xp = backend.get_array_module(x)
        # 1 / (1 + e^-x) overflows e^-x for very negative x; this form never exponentiates a
        # positive number: e^-|x| is in (0, 1].
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)

    def backward(self, grad):
        y = self.output()
        return (grad * y * (1.0 - y),)


class Tanh(Function):
    keeps_output = True  # d tanh(x)/dx = 1 - y^2: reuse the result y

    def forward(self, x):
        # NumPy's and CuPy's tanh saturate at +-1 for large |x|; the textbook
        # (e^x - e^-x) / (e^x + e^-x) would give inf / inf = nan there.
        return backend.get_array_module(x).tanh(x)

    def backward(self, grad):
        y = self.output()
        return (grad * (1.0 - y * y),)


class KeepWhere(Function):
    """x where `keep` (a bool array broadcastable to x) is True, 0 elsewhere."""

    def __init__(self, keep: Any) -> None:
        self.keep = keep

    def forward(self, x):
        return backend.get_array_module(x).where(self.keep, x, 0).astype(x.dtype)

    def backward(self, grad):
        # The gradient passes where x was kept; a dropped position (NaN or inf included)
        # gets 0, not 0 * its value. Linear, so this is right to every order.
        return (KeepWhere(self.keep).apply(grad),)


class AsType(Function):
    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        return x.astype(self.dtype)

    def backward(self, grad):
        return (grad.astype(self.inputs[0].dtype),)


def exp(x: Tensor) -> Tensor:
    """e ** x, elementwise."""
    return Exp().apply(x)


def log(x: Tensor) -> Tensor:
    """Natural logarithm, elementwise."""
    return Log().apply(x)


def sqrt(x: Tensor) -> Tensor:
    """Square root, elementwise."""
    return Sqrt().apply(x)


def abs(x: Tensor) -> Tensor:
    """|x|, elementwise; its gradient at 0 is 0."""
    return Abs().apply(x)


def relu(x: Tensor) -> Tensor:
    """max(x, 0), elementwise; its gradient at 0 is 0."""
    return ReLU().apply(x)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + e^-x), elementwise, without overflow for large |x|."""
    return Sigmoid().apply(x)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent, elementwise, without overflow for large |x|."""
    return Tanh().apply(x)


def keep_where(x: Tensor, keep: Any) -> Tensor:
    """numpy.where(keep, x, 0): x where the bool array `keep` is True, 0 elsewhere. Unlike
    x * keep, a NaN or inf where keep is False does not spread (NaN * 0 is NaN)."""
    return KeepWhere(keep).apply(x)


def astype(x: Tensor, dtype: Any) -> Tensor:
    """`x` cast to `dtype`; the gradient is cast back to x's dtype."""
    if np.dtype(dtype) == x.dtype:
        return x
    if x.requires_grad and np.dtype(dtype).kind != "f":
        raise TypeError(f"astype: a tensor that requires grad can only become a float, not {dtype}")
    return AsType(dtype).apply(x)

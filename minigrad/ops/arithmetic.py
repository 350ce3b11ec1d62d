"""+ - * / ** and comparisons. Each binary operation broadcasts like NumPy, and its backward
sums each gradient back to its operand's shape (sum_to)."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from minigrad import backend
from minigrad.autograd import Function
from minigrad.ops.shape import sum_to
from minigrad.tensor import Tensor, not_real_error, real_numpy_array

# Real numbers. Complex ones are refused: a real function of a complex input has no gradient
# in the sense backward() computes, and NumPy would silently drop the imaginary part.
_SCALARS = (int, float, np.integer, np.floating, np.bool_)
_CONTEXT = "Tensor operation"  # how errors about an operand begin


def as_tensor(value: Any, like: Tensor) -> Tensor:
    """`value` as a constant tensor to combine with `like`.

    Python and NumPy scalars and lists take `like`'s backend and dtype, so 2.0 * x stays
    float32 when x is float32 (they are "weak", as in NumPy 2 and PyTorch). Arrays keep their
    own dtype and backend; combining backends is then an error. Complex numbers, strings and
    other non-numbers are refused with a TypeError.
    """
    if isinstance(value, Tensor):
        return value
    kind = like.data.dtype.kind
    xp = backend.get_array_module(like.data)
    if isinstance(value, _SCALARS):
        # A float scalar meeting an integer tensor makes a float result, as in NumPy.
        keep_dtype = kind == "f" or (kind in "iu" and not isinstance(value, (float, np.floating)))
        return Tensor._make(xp.asarray(value, dtype=like.data.dtype if keep_dtype else None))
    if isinstance(value, (list, tuple)):
        array = real_numpy_array(value, _CONTEXT)
        keep_dtype = kind == "f" or (kind in "iu" and array.dtype.kind in "biu")
        return Tensor._make(xp.asarray(array, dtype=like.data.dtype if keep_dtype else None))
    if backend.is_array(value):
        if value.dtype.kind not in "biuf":
            raise not_real_error(value, _CONTEXT)
        return Tensor._make(backend.get_array_module(value).asarray(value))
    if isinstance(value, complex):
        raise not_real_error(value, _CONTEXT)
    raise TypeError(
        f"cannot combine a Tensor with {type(value).__name__} {value!r:.60}; expected a Tensor, "
        "a real number, a list or an array"
    )


def as_operands(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Two operands as tensors: a number, list or array takes its cue from the tensor."""
    if not isinstance(a, Tensor):
        return as_tensor(a, b), b
    if not isinstance(b, Tensor):
        return a, as_tensor(b, a)
    return a, b


def _binary(fn: Function, a: Any, b: Any, name: str | None = None) -> Tensor:
    a, b = as_operands(a, b)
    try:
        return fn.apply(a, b)
    except ValueError:
        name = name or fn.name.lower()
        raise ValueError(
            f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together"
        ) from None


class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        a, b = self.inputs
        return (
            sum_to(grad, a.shape) if a.requires_grad else None,
            sum_to(grad, b.shape) if b.requires_grad else None,
        )


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        a, b = self.inputs
        return (
            sum_to(grad, a.shape) if a.requires_grad else None,
            sum_to(-grad, b.shape) if b.requires_grad else None,
        )


class Mul(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, grad):
        a, b = self.inputs
        return (
            sum_to(grad * b, a.shape) if a.requires_grad else None,
            sum_to(grad * a, b.shape) if b.requires_grad else None,
        )


class Div(Function):
    def forward(self, a, b):
        return a / b

    def backward(self, grad):
        a, b = self.inputs
        grad_a = grad / b  # d(a/b)/da = 1/b
        return (
            sum_to(grad_a, a.shape) if a.requires_grad else None,
            # d(a/b)/db = -a/b^2 = -(grad/b) * a / b
            sum_to(-(grad_a * a) / b, b.shape) if b.requires_grad else None,
        )


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, grad):
        return (-grad,)


class Pow(Function):
    """x ** c for a constant number c."""

    def __init__(self, exponent: float) -> None:
        self.exponent = exponent

    def forward(self, x):
        return x**self.exponent

    def backward(self, grad):
        (x,) = self.inputs
        if self.exponent == 0:
            return (grad * 0.0,)  # x ** 0 is constant; avoid 0 * inf at x = 0
        return (grad * self.exponent * x ** (self.exponent - 1),)


class PowTensor(Function):
    """x ** y for two tensors, broadcasting.

    The forward follows NumPy (nan for a negative base with a non-integer exponent). The
    exponent's gradient x^y log x needs x > 0: where x <= 0 it is nan (-inf times 0 at x = 0),
    as PyTorch's is for x < 0. The base's gradient y x^(y-1) needs no such care.
    """

    keeps_output = True  # d(x^y)/dy = x^y log x: reuse the result

    def forward(self, x, y):
        return x**y

    def backward(self, grad):
        x, y = self.inputs
        return (
            sum_to(grad * y * x ** (y - 1.0), x.shape) if x.requires_grad else None,
            sum_to(grad * self.output() * x.log(), y.shape) if y.requires_grad else None,
        )


def add(a: Any, b: Any) -> Tensor:
    """a + b, broadcasting."""
    return _binary(Add(), a, b)


def sub(a: Any, b: Any) -> Tensor:
    """a - b, broadcasting."""
    return _binary(Sub(), a, b)


def mul(a: Any, b: Any) -> Tensor:
    """a * b, broadcasting."""
    return _binary(Mul(), a, b)


def div(a: Any, b: Any) -> Tensor:
    """a / b, broadcasting."""
    return _binary(Div(), a, b)


def neg(x: Tensor) -> Tensor:
    """-x."""
    return Neg().apply(x)


def pow(x: Tensor, exponent: Any) -> Tensor:
    """x ** exponent: a number exponent, or a tensor (or array) one that broadcasts with x.

    A tensor exponent's gradient, x^y log x, needs a positive base (see PowTensor).
    """
    if isinstance(exponent, _SCALARS):
        # A NumPy scalar exponent would promote float32 to float64 (NumPy scalars are not
        # "weak" under NEP 50); as a Python number it keeps x's dtype.
        return Pow(exponent.item() if isinstance(exponent, np.generic) else exponent).apply(x)
    return _binary(PowTensor(), x, exponent, name="pow")


def rpow(base: Any, x: Tensor) -> Tensor:
    """base ** x: a positive number base as exp(x * log(base)); an array or list base through
    PowTensor (broadcasting)."""
    if isinstance(base, _SCALARS):
        if base <= 0:
            raise ValueError(f"pow: number ** Tensor needs a positive number base, got {base!r}")
        return (x * math.log(base)).exp()
    return _binary(PowTensor(), base, x, name="pow")  # as_tensor refuses what is not real


_COMPARISONS = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}


def compare(name: str, a: Any, b: Any) -> Tensor:
    """An elementwise comparison: a boolean tensor, outside the graph (not differentiable)."""
    a, b = as_operands(a, b)
    if type(a.data) is not type(b.data):
        raise TypeError(
            f"{name}: cannot compare a tensor on {a.backend} with one on {b.backend}"
        )
    try:
        return Tensor._make(_COMPARISONS[name](a.data, b.data))
    except ValueError:
        raise ValueError(
            f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together"
        ) from None

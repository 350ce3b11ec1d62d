"""Tensor's Python syntax: x + y, x @ w, x[i], x < y, x.sum(), x.exp(), x.reshape(2, 3), x.T.

The operations take Tensors, so they are defined after the Tensor class; their operators are
therefore attached to it here, once both exist (DeZero's setup_variable does the same). Each
line below names the operation in minigrad/ops that computes the operator. The package's
__init__ calls attach_to_tensor(), so `import minigrad` gives Tensor every operator.
"""

from __future__ import annotations

from typing import Any, Callable

from minigrad.ops.arithmetic import add, compare, div, mul, neg, pow, rpow, sub
from minigrad.ops.elementwise import abs, astype, exp, log, relu, sigmoid, sqrt, tanh
from minigrad.ops.linalg import matmul
from minigrad.ops.reduce import max, mean, sum
from minigrad.ops.shape import broadcast_to, getitem, reshape, transpose
from minigrad.tensor import Tensor


def attach_to_tensor() -> None:
    """Make each operation a Tensor operator or method: x + y calls add(x, y), and so on."""
    Tensor.__add__, Tensor.__radd__ = add, _reflected(add)
    Tensor.__sub__, Tensor.__rsub__ = sub, _reflected(sub)
    Tensor.__mul__, Tensor.__rmul__ = mul, _reflected(mul)
    Tensor.__truediv__, Tensor.__rtruediv__ = div, _reflected(div)
    Tensor.__pow__, Tensor.__rpow__ = pow, _reflected(rpow)
    Tensor.__matmul__, Tensor.__rmatmul__ = matmul, _reflected(matmul)
    Tensor.__neg__, Tensor.__abs__ = neg, abs
    Tensor.__getitem__ = getitem
    for name, symbol in (("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="), ("eq", "=="), ("ne", "!=")):
        setattr(Tensor, f"__{name}__", _comparison(name, symbol))

    for method in (sum, mean, max, exp, log, sqrt, abs, relu, sigmoid, tanh, broadcast_to, astype):
        setattr(Tensor, method.__name__, method)  # x.sum(axis) is sum(x, axis)
    Tensor.reshape = _reshape
    Tensor.transpose = _transpose
    Tensor.T = property(lambda self: transpose(self, None), doc="The axes reversed (x.transpose()).")


def _reflected(operation: Callable[[Any, Any], Tensor]) -> Callable[[Tensor, Any], Tensor]:
    """The operator Python calls for `number (op) tensor`: tensor.__rop__(number)."""

    def reflected(self: Tensor, other: Any) -> Tensor:
        return operation(other, self)

    reflected.__doc__ = f"{operation.__name__}(other, self): the operator with the tensor second."
    return reflected


def _comparison(name: str, symbol: str) -> Callable[[Tensor, Any], Tensor]:
    def comparison(self: Tensor, other: Any) -> Tensor:
        return compare(name, self, other)

    comparison.__doc__ = f"self {symbol} other, elementwise: a boolean tensor, not differentiable."
    return comparison


def _reshape(self: Tensor, *shape: Any) -> Tensor:
    """The same values in a new shape, given as x.reshape(2, 3) or x.reshape((2, 3)); one
    dimension may be -1."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return reshape(self, shape)


def _transpose(self: Tensor, *axes: Any) -> Tensor:
    """Permute the axes, given as x.transpose(1, 0) or x.transpose((1, 0)); reversed when none
    are given."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return transpose(self, axes or None)

"""Matrix multiplication, 2-D and batched (leading axes broadcast like NumPy)."""

from __future__ import annotations

from typing import Any

from minigrad.autograd import Function
from minigrad.ops.arithmetic import as_operands
from minigrad.ops.shape import sum_to
from minigrad.tensor import Tensor


def _swap_last_two(t: Tensor) -> Tensor:
    axes = list(range(t.ndim))
    axes[-2], axes[-1] = axes[-1], axes[-2]
    return t.transpose(axes)


class MatMul(Function):
    def forward(self, a, b):
        return a @ b

    def backward(self, grad):
        # C = A B gives dA = dC B^T and dB = A^T dC; batch axes that were broadcast are
        # summed back to each operand's shape.
        a, b = self.inputs
        return (
            sum_to(grad @ _swap_last_two(b), a.shape) if a.requires_grad else None,
            sum_to(_swap_last_two(a) @ grad, b.shape) if b.requires_grad else None,
        )


def matmul(a: Any, b: Any) -> Tensor:
    """a @ b. 1-D operands are treated as a row (first) or a column (second), as in NumPy, so a
    vector @ vector is a 0-d tensor (the dot product)."""
    a, b = as_operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 axis, got shapes {a.shape} and {b.shape}")
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != inner_b:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} do not match: the last axis of the first "
            f"({a.shape[-1]}) must equal the {'only' if b.ndim == 1 else 'second-to-last'} axis "
            f"of the second ({inner_b})"
        )
    if a.ndim == 1 or b.ndim == 1:
        # NumPy's rule: a 1-D first operand is a row (1, n), a 1-D second one a column (n, 1),
        # and the axis so added is removed from the result: vector @ vector is 0-d.
        row = a.reshape(1, -1) if a.ndim == 1 else a
        column = b.reshape(-1, 1) if b.ndim == 1 else b
        out = matmul(row, column)
        rows = () if a.ndim == 1 else out.shape[-2:-1]
        columns = () if b.ndim == 1 else out.shape[-1:]
        return out.reshape(out.shape[:-2] + rows + columns)
    try:
        return MatMul().apply(a, b)
    except ValueError:
        raise ValueError(
            f"matmul: the batch axes of shapes {a.shape} and {b.shape} cannot be broadcast together"
        ) from None

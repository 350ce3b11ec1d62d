"""Gradient checking: backward() compared with central differences, in float64, element by element.

gradcheck builds the whole Jacobian both ways. The numeric one moves each element of each
input by +eps and -eps and takes (f(x + eps) - f(x - eps)) / (2 eps); the analytic one runs
one backward pass per output element. An entry passes when
|analytic - numeric| <= atol + rtol * |numeric|, as in numpy.allclose, and both are finite: a NaN
or an inf (an overflowing function, a 0 * inf in backward) is a failure, never a pass.

gradgradcheck checks second derivatives: it gradchecks the function x -> d(sum(v * f(x)))/dx,
computed with create_graph=True, for a fixed random v.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from minigrad import backend
from minigrad.autograd import grad
from minigrad.tensor import Tensor


@dataclass
class InputCheck:
    """The result for one input: its largest errors, where they are, and whether it passed."""

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    abs_error_at: tuple[int, ...]
    max_rel_error: float
    rel_error_at: tuple[int, ...]
    passed: bool


@dataclass
class GradcheckReport:
    """What gradcheck measured, one row per checked input; str() prints it as a table."""

    title: str
    eps: float
    atol: float
    rtol: float
    inputs: list[InputCheck] = field(default_factory=list)
    failure: str | None = None

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def max_abs_error(self) -> float:
        return max((row.max_abs_error for row in self.inputs), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((row.max_rel_error for row in self.inputs), default=0.0)

    def __str__(self) -> str:
        header = ("input", "shape", "max abs error", "at", "max rel error", "at", "result")
        rows = [
            (
                row.name,
                str(row.shape),
                f"{row.max_abs_error:.2e}",
                str(row.abs_error_at),
                f"{row.max_rel_error:.2e}",
                str(row.rel_error_at),
                "pass" if row.passed else "FAIL",
            )
            for row in self.inputs
        ]
        widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
        lines = [
            f"{self.title}: float64, eps={self.eps:g}, pass if |analytic - numeric| <= "
            f"{self.atol:g} + {self.rtol:g} * |numeric|: {'PASS' if self.passed else 'FAIL'}",
            *("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
              for line in [header, *rows]),
        ]
        if self.failure:
            lines.append(self.failure)
        return "\n".join(lines)


class GradcheckError(AssertionError):
    """Raised when backward and finite differences disagree; `.report` holds the table."""

    def __init__(self, message: str, report: GradcheckReport) -> None:
        super().__init__(message)
        self.report = report


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    names: Sequence[str] | None = None,
    raise_on_failure: bool = True,
    title: str = "gradcheck",
) -> GradcheckReport:
    """Compare fn's backward with central differences on every element of every float input.

    fn takes the inputs and returns a Tensor or a tuple of Tensors. Float inputs (tensors or
    arrays) are copied to float64 and checked (tensors on their backend, arrays on the current
    one); other inputs (integer labels, say) are passed
    through as they are. Returns a GradcheckReport; raises GradcheckError on a mismatch
    or a non-finite (NaN, inf) derivative, naming the input, the element, and the numeric and
    analytic values.
    """
    _check_settings(eps, atol, rtol)
    args, checked = _prepare_inputs(inputs, names)
    checked_inputs = [args[i] for i, _ in checked]
    outputs = _outputs(fn(*args), title)
    analytic = _analytic_jacobians(outputs, checked_inputs)
    output_sizes = [o.size for o in outputs]
    numeric = _numeric_jacobians(fn, args, checked_inputs, eps, title, sum(output_sizes))

    report = GradcheckReport(title, eps, atol, rtol)
    worst = None  # (excess over the tolerance, message)
    for (position, name), a, n, x in zip(checked, analytic, numeric, checked_inputs):
        error, allowed, relative, excess, non_finite = _compare(a, n, atol, rtol)
        passed = not (excess > 0).any()
        report.inputs.append(InputCheck(
            name, x.shape, *_largest(error, x.shape), *_largest(relative, x.shape), passed
        ))
        if not passed:
            out_at, in_at = np.unravel_index(np.argmax(excess), excess.shape)
            if worst is None or excess[out_at, in_at] > worst[0]:
                where = (
                    f"{title} failed for input {name!r} (argument {position}) at element "
                    f"{_element(in_at, x.shape)}, {_output_element(out_at, outputs, output_sizes)}: "
                    f"numeric {n[out_at, in_at]:.10g}, analytic {a[out_at, in_at]:.10g}"
                )
                if non_finite[out_at, in_at]:
                    cause = _non_finite_cause(a[out_at, in_at], n[out_at, in_at], outputs)
                    message = f"{where} ({cause})"
                else:
                    message = (
                        f"{where} (|difference| {error[out_at, in_at]:.3g} > allowed "
                        f"{allowed[out_at, in_at]:.3g})"
                    )
                worst = (excess[out_at, in_at], message)
    if worst is not None:
        report.failure = worst[1]
        if raise_on_failure:
            raise GradcheckError(f"{worst[1]}\n{report}", report)
    return report


def gradgradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    names: Sequence[str] | None = None,
    raise_on_failure: bool = True,
    seed: int = 0,
    title: str = "gradgradcheck",
) -> GradcheckReport:
    """Check second derivatives: gradcheck of x -> d(sum(v * fn(x)))/dx, taken with
    create_graph=True, for a fixed random v (drawn from `seed`, not from manual_seed).
    `title` heads the report, as in gradcheck."""
    args, checked = _prepare_inputs(inputs, names)
    rng = np.random.default_rng(seed)
    weights = [
        Tensor._make(backend.to_backend(rng.standard_normal(o.shape), o.backend))
        for o in _outputs(fn(*args), "gradgradcheck")
    ]
    positions = [i for i, _ in checked]

    def first_derivatives(*xs: Any) -> tuple[Tensor, ...]:
        differentiated = [xs[i] for i in positions]
        grads = grad(_outputs(fn(*xs), "gradgradcheck"), differentiated, weights,
                     create_graph=True, allow_unused=True)
        return tuple(
            g if g is not None else Tensor._make(backend.get_array_module(x.data).zeros_like(x.data))
            for g, x in zip(grads, differentiated)
        )

    return gradcheck(first_derivatives, args, eps, atol, rtol,
                     [name for _, name in checked] if names is not None else None,
                     raise_on_failure, title=title)


def _check_settings(eps: float, atol: float, rtol: float) -> None:
    if not eps > 0:
        raise ValueError(f"gradcheck: eps must be positive, got {eps!r}")
    for label, tolerance in (("atol", atol), ("rtol", rtol)):
        if not tolerance >= 0:
            raise ValueError(f"gradcheck: {label} must be non-negative, got {tolerance!r}")


def _prepare_inputs(inputs: Any, names: Sequence[str] | None) -> tuple[list[Any], list[tuple[int, str]]]:
    """float64 leaf copies of the float inputs; [(position, name)] of those to check."""
    if isinstance(inputs, Tensor) or not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    if names is not None and len(names) != len(inputs):
        raise ValueError(f"gradcheck: got {len(names)} names for {len(inputs)} inputs")
    args, checked = [], []
    for position, value in enumerate(inputs):
        data = value.data if isinstance(value, Tensor) else value
        if backend.is_array(data) and data.dtype.kind == "f":
            copy = data.astype(np.float64, copy=True)
            if not isinstance(value, Tensor):  # a raw array goes where new tensors go
                copy = backend.to_backend(copy, backend.get_backend())
            args.append(Tensor._make(copy, requires_grad=True))
            checked.append((position, names[position] if names else f"input {position}"))
        else:
            args.append(value)
    if not checked:
        raise ValueError("gradcheck: no floating-point input to check; pass Tensors or float arrays")
    return args, checked


def _outputs(result: Any, title: str) -> list[Tensor]:
    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    for k, output in enumerate(outputs):
        if not isinstance(output, Tensor):
            raise TypeError(
                f"{title}: fn must return a Tensor or a tuple of Tensors; output {k} is "
                f"{type(output).__name__}"
            )
        if output.dtype != np.float64:
            raise TypeError(
                f"{title}: output {k} is {output.dtype}; compute in float64 so that the check "
                "measures derivatives, not rounding"
            )
    return outputs


def _analytic_jacobians(outputs: list[Tensor], inputs: list[Tensor]) -> list[np.ndarray]:
    """Per input, a (total output size, input size) matrix: one backward per output element."""
    total = sum(o.size for o in outputs)
    jacobians = [np.zeros((total, x.size)) for x in inputs]
    row = 0
    for output in outputs:
        xp = backend.get_array_module(output.data)
        for j in range(output.size):
            if output.requires_grad:
                seed = xp.zeros(output.size, dtype=output.dtype)
                seed[j] = 1.0
                grads = grad(output, inputs, Tensor._make(seed.reshape(output.shape)),
                             retain_graph=True, allow_unused=True)
                for jacobian, g in zip(jacobians, grads):
                    if g is not None:
                        jacobian[row] = g.numpy().reshape(-1)
            row += 1
    return jacobians


def _numeric_jacobians(fn, args, inputs, eps, title, total) -> list[np.ndarray]:
    """Per input, the central-difference Jacobian, moving one element at a time."""
    jacobians = []
    for x in inputs:
        columns = []
        for flat_index in range(x.size):
            index = np.unravel_index(flat_index, x.shape)
            original = x.data[index].item()
            x.data[index] = original + eps
            plus = _flat_values(fn(*args), title)
            x.data[index] = original - eps
            minus = _flat_values(fn(*args), title)
            x.data[index] = original
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is reported later
                columns.append((plus - minus) / (2 * eps))
        jacobians.append(np.stack(columns, axis=1) if columns else np.zeros((total, 0)))
    return jacobians


def _compare(analytic: np.ndarray, numeric: np.ndarray, atol: float, rtol: float) -> tuple:
    """|analytic - numeric|, what is allowed, the relative error, the excess over the allowed
    error (positive: fail), and where either Jacobian is non-finite.

    A NaN compares False with everything, so `error > allowed` alone would let a NaN
    derivative (or an overflow to inf) pass: a non-finite entry counts as an infinite error.
    """
    non_finite = ~(np.isfinite(analytic) & np.isfinite(numeric))
    with np.errstate(invalid="ignore"):  # inf - inf: those entries are replaced just below
        error = np.abs(analytic - numeric)
        allowed = atol + rtol * np.abs(numeric)
        relative = error / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), atol)
        excess = error - allowed
    error, relative, excess = (np.where(non_finite, np.inf, e) for e in (error, relative, excess))
    return error, allowed, relative, excess, non_finite


def _non_finite_cause(analytic: float, numeric: float, outputs: list[Tensor]) -> str:
    """Why a Jacobian entry is not a number: which side is non-finite, and the output that
    overflowed (or is undefined), if one did: its inf or nan spreads to whole rows and columns."""
    sides = [label for label, value in (("analytic", analytic), ("numeric", numeric))
             if not np.isfinite(value)]
    verb = "is" if len(sides) == 1 else "are"
    cause = f"the {' and the '.join(sides)} derivative {verb} non-finite"
    values = _flat_values(outputs, "gradcheck")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        where = _output_element(int(bad[0]), outputs, [o.size for o in outputs])
        cause += (f"; fn's {where} is itself {values[bad[0]]} at these inputs "
                  "- it overflows, divides by zero, or is undefined there")
    return cause


def _flat_values(result: Any, title: str) -> np.ndarray:
    return np.concatenate([o.numpy().reshape(-1) for o in _outputs(result, title)])


def _largest(errors: np.ndarray, input_shape: tuple[int, ...]) -> tuple[float, tuple[int, ...]]:
    """The largest entry of an (outputs, input elements) error matrix, and its input element."""
    if errors.size == 0:
        return 0.0, ()
    output_row, input_column = np.unravel_index(np.argmax(errors), errors.shape)
    return float(errors[output_row, input_column]), _element(input_column, input_shape)


def _element(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat_index), shape)) if shape else ()


def _output_element(row: int, outputs: list[Tensor], sizes: list[int]) -> str:
    for k, (output, size) in enumerate(zip(outputs, sizes)):
        if row < size:
            where = f"output element {_element(row, output.shape)}"
            return where if len(outputs) == 1 else f"{where} of output {k}"
        row -= size
    return "output element ?"  # pragma: no cover - rows never exceed the total

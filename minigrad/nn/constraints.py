"""Weight constraints, by their Keras names, as config dicts or as callables, applied after every
optimizer step.

A constraint maps a weight tensor to the projected weight (same shape). The optimizer calls it
on the weight's values after the update, outside the graph, and writes the result back. The
formulas are Keras's (keras.constraints); norms are taken along `axis`, which for a Dense
kernel (in, out) and axis=0 is the norm of each unit's incoming weights, and for BatchNorm's
gamma (one axis) is the norm of the whole vector. serialize() gives Keras 3's dict form, which
get() takes back.
"""

from __future__ import annotations

from typing import Any, Callable

from minigrad import backend
from minigrad.nn import identifiers
from minigrad.tensor import Tensor

Constraint = Callable[[Tensor], Any]

_EPSILON = 1e-7  # keras.backend.epsilon(): keeps an all-zero weight from dividing by zero


def _norms(weight: Any, axis: Any) -> Any:
    xp = backend.get_array_module(weight)
    return xp.sqrt((weight * weight).sum(axis=axis, keepdims=True))


class NonNeg(identifiers.Configurable):
    """Negative values become 0."""

    def __call__(self, weight: Tensor) -> Tensor:
        return Tensor._make(backend.get_array_module(weight.data).maximum(weight.data, 0))


class UnitNorm(identifiers.Configurable):
    """Rescales to norm 1 along `axis`."""

    def __init__(self, axis: Any = 0) -> None:
        self.axis = axis

    def __call__(self, weight: Tensor) -> Tensor:
        return Tensor._make(weight.data / (_EPSILON + _norms(weight.data, self.axis)))


class MinMaxNorm(identifiers.Configurable):
    """Rescales the norm along `axis` toward [min_value, max_value]; rate 1 enforces it fully."""

    def __init__(
        self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Any = 0
    ) -> None:
        if not 0.0 <= min_value <= max_value:
            raise ValueError(
                f"MinMaxNorm: need 0 <= min_value <= max_value, got {min_value} and {max_value}"
            )
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, weight: Tensor) -> Tensor:
        xp = backend.get_array_module(weight.data)
        norms = _norms(weight.data, self.axis)
        desired = self.rate * xp.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return Tensor._make(weight.data * (desired / (_EPSILON + norms)))


class MaxNorm(MinMaxNorm):
    """Rescales any norm along `axis` above max_value down to max_value (Keras default 2)."""

    def __init__(self, max_value: float = 2.0, axis: Any = 0) -> None:
        super().__init__(0.0, max_value, 1.0, axis)


BY_NAME: dict[str, type] = {
    "non_neg": NonNeg,
    "unit_norm": UnitNorm,
    "max_norm": MaxNorm,
    "min_max_norm": MinMaxNorm,
}

# Our classes by class name: what a config dict's "class_name" may be.
CLASSES: dict[str, type] = {cls.__name__: cls for cls in (NonNeg, UnitNorm, MinMaxNorm, MaxNorm)}

_MODULES = (__name__, "keras.constraints")  # a config dict's "module": ours, or Keras's


def get(identifier: str | dict | Constraint | None) -> Constraint | None:
    """A constraint from None, a Keras name ("non_neg", "max_norm", ...), a config dict as
    serialize() returns, or a callable(weight)."""
    return identifiers.resolve(identifier, BY_NAME, "constraint", "callable(weight) -> weight",
                               classes=CLASSES, modules=_MODULES)


def serialize(constraint: str | dict | Constraint | None) -> dict | None:
    """None for None, else Keras 3's form of one of our constraints (or of a name or a dict
    for one): {"module", "class_name", "config", "registered_name"}. Any other callable is a
    TypeError."""
    constraint = get(constraint)
    return None if constraint is None else identifiers.serialize(
        constraint, CLASSES, __name__, "constraint")

"""Weight penalties, by their Keras names, as config dicts or as callables, added to the loss.

A regularizer maps a weight tensor to a scalar tensor in the graph; `model.regularization_loss()`
sums them over the model's trainable weights, and the training loop adds that to the loss, so
the penalty's gradient reaches the weights through backward(). serialize() gives Keras 3's
dict form, which get() takes back.
"""

from __future__ import annotations

import math
from typing import Callable

from minigrad.nn import identifiers
from minigrad.tensor import Tensor

Regularizer = Callable[[Tensor], Tensor]


def _factor(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and value >= 0
    ):
        raise ValueError(f"regularizer factor {name} must be a finite number >= 0, got {value!r}")
    return float(value)


class L1L2(identifiers.Configurable):
    """l1 * sum(|w|) + l2 * sum(w^2)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = _factor(l1, "l1")
        self.l2 = _factor(l2, "l2")

    def __call__(self, weight: Tensor) -> Tensor:
        penalty = (weight * 0.0).sum()  # a zero on the weight's backend and dtype
        if self.l1:
            penalty = penalty + self.l1 * abs(weight).sum()
        if self.l2:
            penalty = penalty + self.l2 * (weight * weight).sum()
        return penalty

    def __repr__(self) -> str:
        return f"{type(self).__name__}(l1={self.l1:g}, l2={self.l2:g})"


class L1(L1L2):
    """l1 * sum(|w|); Keras's default factor is 0.01."""

    def __init__(self, l1: float = 0.01) -> None:
        super().__init__(l1=l1)


class L2(L1L2):
    """l2 * sum(w^2); Keras's default factor is 0.01."""

    def __init__(self, l2: float = 0.01) -> None:
        super().__init__(l2=l2)


BY_NAME: dict[str, type] = {"l1": L1, "l2": L2, "l1_l2": L1L2}

# Our classes by class name: what a config dict's "class_name" may be.
CLASSES: dict[str, type] = {cls.__name__: cls for cls in (L1L2, L1, L2)}

_MODULES = (__name__, "keras.regularizers")  # a config dict's "module": ours, or Keras's


def get(identifier: str | dict | Regularizer | None) -> Regularizer | None:
    """A regularizer from None, a Keras name ("l1", "l2", "l1_l2"), a config dict as
    serialize() returns, or a callable(weight)."""
    return identifiers.resolve(identifier, BY_NAME, "regularizer", "callable(weight) -> scalar tensor",
                               classes=CLASSES, modules=_MODULES)


def serialize(regularizer: str | dict | Regularizer | None) -> dict | None:
    """None for None, else Keras 3's form of one of our regularizers (or of a name or a dict
    for one): {"module", "class_name", "config", "registered_name"}. Any other callable is a
    TypeError."""
    regularizer = get(regularizer)
    return None if regularizer is None else identifiers.serialize(
        regularizer, CLASSES, __name__, "regularizer")

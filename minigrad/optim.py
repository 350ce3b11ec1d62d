"""Optimizers: SGD with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

import math
from typing import Any, Iterable

from minigrad import backend
from minigrad.autograd import no_grad
from minigrad.tensor import Tensor


class SGD:
    """Stochastic gradient descent, with the update rule of torch.optim.SGD (dampening 0).

    For each parameter theta with gradient g, one step() computes

        g = g + weight_decay * theta                 (L2 weight decay, coupled as in PyTorch)
        b = g on the first step, else momentum * b + g   (only when momentum > 0)
        g = g + momentum * b if nesterov, else b     (only when momentum > 0)
        theta = theta - lr * g

    and then, if the parameter has a constraint (see minigrad.nn.constraints), replaces theta
    by constraint(theta). With a constant lr this is Keras's SGD too: Keras's velocity is
    -lr * b. Parameters without a gradient (frozen, or unused) are left alone, and so is all
    non-trainable state such as BatchNorm's moving statistics, which parameters() never lists.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        if not isinstance(params, Iterable) or isinstance(params, Tensor):
            raise TypeError(
                f"SGD: params must be an iterable of tensors such as model.parameters(), "
                f"got {type(params).__name__}"
            )
        params = list(params)
        if not params:
            raise ValueError(
                "SGD: got an empty parameter list. A model builds its weights on its first "
                "call: call it on a batch, or call model.build(input_shape), before making "
                "the optimizer"
            )
        for position, param in enumerate(params):
            if not isinstance(param, Tensor) or not param.is_leaf or param.dtype.kind != "f":
                raise TypeError(
                    f"SGD: parameter {position} must be a floating-point leaf Tensor, "
                    f"got {param!r:.80}"
                )
        if len({id(param) for param in params}) != len(params):
            raise ValueError("SGD: a parameter appears more than once in params")
        _check_number("lr", lr, 0.0, math.inf)
        _check_number("momentum", momentum, 0.0, 1.0)
        _check_number("weight_decay", weight_decay, 0.0, math.inf)
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.momentum_buffers: list[Any] = [None] * len(params)

    @no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient, in place, then apply its constraint."""
        for index, param in enumerate(self.params):
            if param.grad is None:
                continue
            grad = param.grad.data
            if self.weight_decay:
                grad = grad + self.weight_decay * param.data
            buffer = self.momentum_buffers[index]
            if self.momentum:
                if buffer is None:
                    buffer = grad.copy()
                else:
                    # Follows the parameter if the model was moved with .to() since.
                    buffer = backend.to_backend(buffer, param.backend)
                    buffer *= self.momentum  # in place: b = momentum * b + g, no temporaries
                    buffer += grad
                grad = grad + self.momentum * buffer if self.nesterov else buffer
            constraint = getattr(param, "constraint", None)
            if constraint is None:
                param.data -= self.lr * grad  # in place: whoever holds this tensor sees the step
            else:
                param.data[...] = _constrained(param, param.data - self.lr * grad, constraint)
            self.momentum_buffers[index] = buffer

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (set .grad to None), before the next backward()."""
        for param in self.params:
            param.grad = None


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"SGD: {name} must be a number in [{low:g}, {high:g}], got {value!r}")


def _constrained(param: Tensor, values: Any, constraint: Any) -> Any:
    result = constraint(Tensor._make(values))
    result = result.data if isinstance(result, Tensor) else result
    if tuple(getattr(result, "shape", ())) != param.shape:
        raise ValueError(
            f"SGD: constraint {constraint!r} returned shape {tuple(getattr(result, 'shape', ()))} "
            f"for a parameter of shape {param.shape}; a constraint must keep the shape"
        )
    return result

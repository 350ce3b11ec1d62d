"""Optimizers: SGD with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

import math
from typing import Any, Iterable

from minigrad import backend
from minigrad.autograd import no_grad
from minigrad.tensor import Tensor

DEFAULT_LEARNING_RATE = 0.01


class SGD:
    """Stochastic gradient descent, with momentum, Nesterov momentum and weight decay.

    For each parameter theta with gradient g, one step() computes (torch.optim.SGD's rule,
    with dampening 0)

        g = g + weight_decay * theta                     (L2 weight decay, coupled as in PyTorch)
        b = g on the first step, else momentum * b + g   (only when momentum > 0)
        g = g + momentum * b if nesterov, else b         (only when momentum > 0)
        theta = theta - learning_rate * g

    and then, if the parameter has a constraint (see minigrad.nn.constraints), replaces theta
    by constraint(theta). With a constant learning rate this is Keras's SGD too: Keras's
    velocity is -learning_rate * b. Parameters without a gradient (frozen, or unused) are left
    alone, and so is all non-trainable state such as BatchNorm's moving statistics, which
    parameters() never lists.

    Args:
        params: the tensors to train, usually model.parameters(); floating-point leaf
            tensors, each once. A model has parameters once it is built: call it on a batch,
            or call model.build(input_shape), first.
        learning_rate: the step size, a number >= 0. Default 0.01.
        momentum: how much of the previous velocity b each step keeps, in [0, 1].
            Default 0.0: plain SGD, no velocity.
        nesterov: True for Nesterov momentum, which needs momentum > 0. Default False.
        weight_decay: the coefficient of the L2 penalty added to each gradient, >= 0.
            Default 0.0.
        lr: PyTorch's name for learning_rate, accepted too; give one of the two.

    Creates:
        momentum_buffers: one velocity b per parameter (an array of its shape), None until
        the parameter's first step with momentum. The hyper-parameters are attributes of the
        same names (optimizer.lr reads learning_rate).

    Example:

        >>> import minigrad as mg
        >>> w = mg.Tensor([1.0, 2.0], requires_grad=True)
        >>> optimizer = mg.optim.SGD([w], learning_rate=0.1, momentum=0.9)
        >>> loss = (w * w).sum()      # dloss/dw = 2w = [2, 4]
        >>> optimizer.zero_grad()
        >>> loss.backward()
        >>> optimizer.step()           # the first step: b = g, so w - 0.1 * [2, 4]
        >>> w
        Tensor([0.8, 1.6], dtype=float32, requires_grad=True)
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        learning_rate: float | None = None,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        lr: float | None = None,
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
        self.learning_rate = check_options(
            "SGD", learning_rate, lr, momentum, nesterov, weight_decay, DEFAULT_LEARNING_RATE
        )
        self.params = params
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.momentum_buffers: list[Any] = [None] * len(params)

    @property
    def lr(self) -> float:
        """PyTorch's name for learning_rate (the same value; setting one sets the other)."""
        return self.learning_rate

    @lr.setter
    def lr(self, value: float) -> None:
        self.learning_rate = value

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
                param.data -= self.learning_rate * grad  # in place: whoever holds this tensor sees the step
            else:
                param.data[...] = _constrained(param, param.data - self.learning_rate * grad, constraint)
            self.momentum_buffers[index] = buffer

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (set .grad to None), before the next backward()."""
        for param in self.params:
            param.grad = None


def check_options(
    caller: str,
    learning_rate: float | None,
    lr: float | None,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    default_learning_rate: float | None = None,
) -> float:
    """Check SGD's options and return the learning rate, given as learning_rate or lr.

    Neither given means default_learning_rate (a TypeError if there is none); both given is a
    TypeError. fit() calls this before it touches the model, so bad options change nothing.
    """
    if learning_rate is not None and lr is not None:
        raise TypeError(
            f"{caller}: got both learning_rate={learning_rate!r} and lr={lr!r}; lr is another "
            "name for learning_rate, so give one of them"
        )
    if learning_rate is None and lr is None:
        if default_learning_rate is None:
            raise TypeError(f"{caller}: missing the learning rate; pass learning_rate=... (or lr=...)")
        learning_rate = default_learning_rate
    name = "learning_rate" if lr is None else "lr"
    learning_rate = learning_rate if lr is None else lr
    _check_number(caller, name, learning_rate, 0.0, math.inf)
    _check_number(caller, "momentum", momentum, 0.0, 1.0)
    _check_number(caller, "weight_decay", weight_decay, 0.0, math.inf)
    if nesterov and momentum == 0:
        raise ValueError(f"{caller}: nesterov=True needs momentum > 0")
    return learning_rate


def _check_number(caller: str, name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{caller}: {name} must be a number in [{low:g}, {high:g}], got {value!r}")


def _constrained(param: Tensor, values: Any, constraint: Any) -> Any:
    result = constraint(Tensor._make(values))
    result = result.data if isinstance(result, Tensor) else result
    if tuple(getattr(result, "shape", ())) != param.shape:
        raise ValueError(
            f"SGD: constraint {constraint!r} returned shape {tuple(getattr(result, 'shape', ()))} "
            f"for a parameter of shape {param.shape}; a constraint must keep the shape"
        )
    return result

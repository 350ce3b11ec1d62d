"""Reverse-mode automatic differentiation: the graph, grad mode, and the backward pass.

Every differentiable operation is a `Function` with two methods side by side:
`forward` works on raw arrays, `backward` turns the output's gradient into the inputs'
gradients using Tensor operations. Because backward is written in Tensor operations, running
it with grad mode on (create_graph=True) records a graph of its own, and second derivatives
come for free. With create_graph=False it runs under no_grad and records nothing.

The graph: a tensor made by an operation keeps that operation in `_ctx` (shown as
`tensor.grad_fn`); the operation keeps its input tensors in `inputs`. Nothing points back from
an operation to its output, so the graph has no reference cycles and is freed as soon as the
last tensor of it goes. topological_order(loss) lists the graph, inputs first.

This module sits below tensor.py and never imports it: it builds new tensors through the
tensors it is given (`inputs[0]._make(...)`), so the Tensor class can import this one.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

from minigrad import backend

if TYPE_CHECKING:  # for the annotations only: tensor.py imports this module
    from minigrad.tensor import Tensor


class _GradState(threading.local):
    """Grad mode, one per thread. The class attribute is what a thread that never set the mode
    reads, so every new thread starts with recording on, as in PyTorch."""

    enabled = True


# Each thread sees its own `enabled`: a no_grad block in a data-loading thread must not stop
# the training thread from recording its graph.
_grad_state = _GradState()


def is_grad_enabled() -> bool:
    """True when operations record the graph that backward() needs (in this thread)."""
    return _grad_state.enabled


class _GradMode:
    """Sets this thread's grad mode inside a `with` block, or around each call of a function.

    As a decorator it makes a fresh context per call, so recursive calls and calls from
    several threads never share the saved previous mode. On a generator function the mode
    holds while the generator's body runs, and the caller's own mode is back between yields.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        self.previous = _grad_state.enabled
        _grad_state.enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        _grad_state.enabled = self.previous

    def __call__(self, fn: Callable) -> Callable:
        enabled = self.enabled
        if inspect.isgeneratorfunction(fn):
            return _generator_in_mode(fn, enabled)

        @functools.wraps(fn)
        def in_mode(*args: Any, **kwargs: Any) -> Any:
            with _GradMode(enabled):
                return fn(*args, **kwargs)

        return in_mode


def _generator_in_mode(fn: Callable, enabled: bool) -> Callable:
    """Wrap generator function fn so that each step of its body runs in grad mode `enabled`.

    A plain `with` around `yield from` would leave the mode switched for the caller too while
    the generator is suspended; instead every resumption (next, send, throw, close) is wrapped.
    """

    @functools.wraps(fn)
    def in_mode(*args: Any, **kwargs: Any) -> Any:
        generator = fn(*args, **kwargs)
        try:
            with _GradMode(enabled):
                response = generator.send(None)
            while True:
                try:
                    request = yield response
                except GeneratorExit:
                    with _GradMode(enabled):
                        generator.close()
                    raise
                except BaseException as error:  # thrown in by the caller: pass it on
                    with _GradMode(enabled):
                        response = generator.throw(error)
                else:
                    with _GradMode(enabled):
                        response = generator.send(request)
        except StopIteration as stop:  # the body returned: so do we, with its value
            return stop.value

    return in_mode


def no_grad() -> _GradMode:
    """Context manager (or decorator) under which operations record no graph (in this thread)."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Context manager (or decorator) that turns graph recording back on (in this thread)."""
    return _GradMode(True)


class Function:
    """One differentiable operation. Subclasses define forward (arrays) and backward (Tensors).

    A Function instance is one node of the graph: `inputs` holds the input tensors, and the
    subclass may keep whatever else its backward needs as attributes. backward(grad) returns
    one gradient (a Tensor, or None for "no gradient") per input. Your own operation:

        class Square(mg.Function):
            def forward(self, x):          # x is a NumPy (or CuPy) array
                return x * x

            def backward(self, grad):      # grad and the result are Tensors
                (x,) = self.inputs
                return (grad * 2.0 * x,)   # d(x^2)/dx = 2x

        y = Square().apply(x)              # y.grad_fn is that Square node
    """

    inputs: tuple[Tensor, ...] | None
    # Set by operations whose backward reuses their own result (exp, sqrt). The output is
    # held through a weak reference: a strong one would make a cycle output -> node -> output.
    keeps_output = False
    # True while backward runs for the last time (the graph is freed right after), so its
    # saved arrays may be overwritten: BatchNormFast writes dl/dx into its saved x - mu.
    last_use = False

    def forward(self, *arrays):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def backward(self, grad: Tensor):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def apply(self, *inputs: Tensor) -> Tensor:
        """Run forward on the inputs' arrays and, in grad mode, record this node."""
        first = type(inputs[0].data)
        for tensor in inputs:
            if type(tensor.data) is not first:
                _raise_mixed_backends(self, inputs)
        out = inputs[0]._make(self.forward(*[t.data for t in inputs]))
        if _grad_state.enabled:
            for tensor in inputs:
                if tensor.requires_grad:
                    out.requires_grad = True
                    out._ctx = self
                    self.inputs = inputs
                    if self.keeps_output:
                        self.output = weakref.ref(out)
                    break
        return out

    @property
    def name(self) -> str:
        """The operation's name, as error messages and repr() show it."""
        return type(self).__name__

    def __repr__(self) -> str:
        inputs = getattr(self, "inputs", None)  # not yet applied, or released after backward
        if inputs is None:
            return f"<{self.name}>"
        return f"<{self.name}: input shapes {', '.join(str(t.shape) for t in inputs)}>"

    def release(self) -> None:
        """Drop everything this node holds (inputs and saved values): the graph is freed."""
        self.__dict__.clear()
        self.inputs = None


def _raise_mixed_backends(fn: Function, inputs: Sequence[Tensor]) -> None:
    names = []
    for tensor in inputs:
        try:
            names.append(backend.backend_of(tensor.data))
        except TypeError:
            names.append(type(tensor.data).__name__)
    raise TypeError(
        f"{fn.name}: cannot mix backends in one operation, got tensors on "
        f"{' and '.join(names)}; move one with .to({names[0]!r}) or .to({names[-1]!r})"
    )


def topological_order(roots: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """The graph behind `roots` (a tensor or a list of them), inputs first and the roots last.

    Every tensor comes after the tensors it was computed from, so the list is an order in
    which the forward pass could be run again; backward walks it from the end. Only tensors
    that require grad are listed: constants get no gradient. An iterative depth-first search,
    so a graph thousands of operations deep does not reach Python's recursion limit.
    """
    order: list[Tensor] = []
    visited: set[int] = set()
    stack = [(root, False) for root in _as_list(roots)]
    while stack:
        tensor, children_done = stack.pop()
        if children_done:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        fn = tensor._ctx
        if fn is None:
            continue
        if fn.inputs is None:
            raise RuntimeError(
                f"the graph has already been freed: a tensor of shape {tensor.shape} was made "
                f"by {fn.name}, whose graph an earlier backward() released. Pass "
                "retain_graph=True to the earlier call to go through the graph again"
            )
        for parent in fn.inputs:
            if parent.requires_grad and id(parent) not in visited:
                stack.append((parent, False))
    return order


def _as_list(tensors: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """One tensor, or a list or tuple of them, as a list."""
    return list(tensors) if isinstance(tensors, Sequence) else [tensors]


def run_backward(
    roots: Sequence[Tensor],
    root_grads: Sequence[Tensor],
    retain_graph: bool,
    create_graph: bool,
    capture: Sequence[Tensor] | None = None,
) -> list[Tensor | None] | None:
    """Send root_grads back through the graph.

    Without `capture`, gradients of leaf tensors are added to their `.grad` (backward()).
    With `capture`, the gradients of exactly those tensors are returned and no `.grad`
    changes (grad()).
    """
    order = topological_order(roots)
    # Arrays a leaf may not keep as its .grad without a copy: the caller's own gradients, and
    # each array once a leaf has taken it (see _accumulate).
    taken = {id(grad.data): grad.data for grad in root_grads}
    pending: dict[int, Tensor] = {}
    for root, grad in zip(roots, root_grads):
        _add_pending(pending, root, grad)
    captured: dict[int, Tensor] = {}
    capture_ids = None if capture is None else {id(t) for t in capture}

    with _GradMode(create_graph):
        for tensor in reversed(order):  # every tensor before the ones it was computed from
            grad = pending.pop(id(tensor), None)
            if grad is None:
                continue
            if capture_ids is not None and id(tensor) in capture_ids:
                captured[id(tensor)] = grad
            fn = tensor._ctx
            if fn is None:  # a leaf: backward() adds to .grad, grad() only captures
                if capture_ids is None:
                    _accumulate(tensor, grad, create_graph, taken)
                continue
            fn.last_use = not retain_graph
            for parent, parent_grad in zip(fn.inputs, fn.backward(grad)):
                if parent_grad is not None and parent.requires_grad:
                    if parent_grad.dtype != parent.dtype:
                        # A float32 weight met a float64 input: its gradient is still
                        # float32, as in PyTorch, so an optimizer step keeps its dtype.
                        parent_grad = parent_grad.astype(parent.dtype)
                    _add_pending(pending, parent, parent_grad)
            if not retain_graph:
                fn.release()
    if capture is None:
        return None
    return [captured.get(id(t)) for t in capture]


def _add_pending(pending: dict[int, Tensor], tensor: Tensor, grad: Tensor) -> None:
    # A tensor reached along several paths gets the sum of the gradients along each.
    previous = pending.get(id(tensor))
    pending[id(tensor)] = grad if previous is None else previous + grad


def _accumulate(leaf: Tensor, grad: Tensor, create_graph: bool, taken: dict[int, Any]) -> None:
    if create_graph:
        leaf.grad = grad if leaf.grad is None else leaf.grad + grad
    elif leaf.grad is None:
        array = grad.data
        # A leaf keeps the gradient array itself when nothing else can see it, as PyTorch
        # does: a fresh array that owns its memory (not a view), not the caller's, and not
        # already taken by another leaf (add's backward hands one array to both inputs).
        # Otherwise a copy, so that two leaves never share, and later mutate, one array.
        if array.base is not None or id(array) in taken:
            array = array.copy()
        taken[id(array)] = array  # kept alive, so its id cannot be reused during this pass
        leaf.grad = grad._make(array)
    else:
        leaf.grad = grad._make(leaf.grad.data + grad.data)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Tensor | Sequence[Tensor | None] | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> list[Tensor | None]:
    """Gradients of `outputs` with respect to `inputs`, returned rather than stored in .grad.

    Like torch.autograd.grad. grad_outputs weights each output (needed unless the output
    has one element). With create_graph=True the returned gradients are differentiable,
    which is how second derivatives are taken. retain_graph defaults to create_graph.
    An input that the outputs do not depend on is an error unless allow_unused=True,
    in which case its gradient is None.
    """
    outputs = _as_list(outputs)
    inputs = _as_list(inputs)
    if not isinstance(grad_outputs, Sequence):  # None, or one gradient for every output
        grad_outputs = [grad_outputs] * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(
            f"grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs"
        )
    for position, tensor in enumerate(inputs):
        if not tensor.requires_grad:
            raise ValueError(f"grad: input {position} (shape {tensor.shape}) does not require grad")
    roots, root_grads = [], []
    for output, output_grad in zip(outputs, grad_outputs):
        if not output.requires_grad:
            continue  # a constant output contributes nothing
        roots.append(output)
        root_grads.append(output._initial_grad(output_grad, "grad"))
    retain = create_graph if retain_graph is None else retain_graph
    results = run_backward(roots, root_grads, retain, create_graph, capture=inputs)
    for position, result in enumerate(results):
        if result is None and not allow_unused:
            raise ValueError(
                f"grad: input {position} (shape {inputs[position].shape}) is not used to "
                "compute the outputs; pass allow_unused=True to get None for it"
            )
    return results


"""The Tensor: an array (NumPy or CuPy), its gradient, and the operation that made it.

This file holds the data, backward() and the checks on what a tensor can be made from. The
operations live in minigrad/ops/, one forward rule beside one backward rule, and they take
Tensors, so they come after this class: minigrad/ops/operators.py then gives Tensor its
Python syntax (x + y, x @ w, x[i], x.sum(), x.exp()), in one place.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from minigrad import autograd, backend


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    Tensor(data, requires_grad=False, dtype=None) copies `data`. Python numbers and lists
    become float32 unless `dtype` says otherwise; NumPy and CuPy arrays keep their dtype. A new tensor is
    created on the current backend (see minigrad.set_backend); operations keep their result
    on the backend of their operands.

    Attributes: `data` (the array), `grad` (a Tensor once backward() has reached this one),
    `requires_grad`, and `grad_fn`: the Function that made this tensor (None for a leaf).
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__weakref__")
    __array_ufunc__ = None  # make NumPy defer to Tensor's operators: np.float32(2) * t is a Tensor

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        xp = backend.module(backend.get_backend())
        if isinstance(data, Tensor):
            data = data.data
        if backend.is_array(data):
            # A copy, as torch.tensor makes: an in-place update of .data (an optimizer step)
            # must never reach into the caller's array.
            array = xp.array(backend.to_backend(data, backend.get_backend()), dtype=dtype, copy=True)
        else:
            array = _array_from_python(xp, data, dtype)
        if array.dtype.kind not in "biuf":  # a complex, string or object array; or dtype=complex
            raise not_real_error(data if backend.is_array(data) else array, "Tensor")
        self.data = array
        self.grad: Tensor | None = None
        self.requires_grad = False
        self._ctx: autograd.Function | None = None
        if requires_grad:
            self.requires_grad_()

    @staticmethod
    def _make(data: Any, requires_grad: bool = False) -> Tensor:
        """Wrap an array that an operation produced, without the checks of __init__ (hot path).

        Always a plain Tensor, even when reached through a Parameter (autograd calls
        `inputs[0]._make`): the result of an operation on a weight is not a weight.
        """
        if type(data) is not np.ndarray and isinstance(data, np.generic):
            data = np.asarray(data)  # NumPy returns scalars from 0-d operations
        tensor = object.__new__(Tensor)
        tensor.data = data
        tensor.grad = None
        tensor.requires_grad = requires_grad
        tensor._ctx = None
        return tensor

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Mark this leaf tensor as one whose gradient backward() should compute."""
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require grad; this one has dtype "
                f"{self.data.dtype}. Create it with dtype=float32 or float64"
            )
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_(False) works on leaf tensors only; use detach()")
        self.requires_grad = requires_grad
        return self

    # ---- what the tensor is ------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def backend(self) -> str:
        """"numpy" or "cupy": where this tensor's array lives."""
        return backend.backend_of(self.data)

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by an operation in a graph."""
        return self._ctx is None

    @property
    def grad_fn(self) -> autograd.Function | None:
        """The Function (graph node) that made this tensor; None for a leaf (PyTorch's name).

        Its `inputs` are the tensors it was applied to, so grad_fn.inputs[0].grad_fn walks the
        graph back one step.
        """
        return self._ctx

    def numpy(self) -> np.ndarray:
        """A NumPy copy of the data (copied from the GPU on CuPy)."""
        return backend.to_numpy(self.data)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self) -> Any:
        """The values as (nested) Python lists."""
        return self.numpy().tolist()

    def argmax(self, axis: int | None = None) -> Tensor:
        """Index of the maximum along `axis` (not differentiable)."""
        return Tensor._make(self.data.argmax(axis=axis))

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, cut out of the graph (requires_grad=False)."""
        return Tensor._make(self.data)

    def to(self, name: str) -> Tensor:
        """This tensor on backend `name` ("numpy" or "cupy"), with its gradient moved too.

        The result is a new leaf with the same requires_grad; a tensor already on `name` is
        returned as is. Only leaves move: a tensor in the middle of a graph would lose its
        history on the way, so that is an error (call .detach() first if that is intended).
        """
        backend.module(name)  # a clear error for an unknown or unavailable backend
        if self.backend == name:
            return self
        if self._ctx is not None:
            raise RuntimeError(
                f"to({name!r}) moves leaf tensors only; this one (shape {self.shape}) was made "
                f"by {self._ctx.name} in a graph. Move its inputs, or call .detach().to(...)"
            )
        moved = Tensor._make(backend.to_backend(self.data, name), self.requires_grad)
        if self.grad is not None:
            moved.grad = self.grad.to(name)
        return moved

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="Tensor(")
        extras = [f"dtype={self.dtype}"]
        if self.backend != "numpy":
            extras.append(f"backend={self.backend!r}")
        if self._ctx is not None:
            extras.append(f"grad_fn={self._ctx.name}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return f"Tensor({body}, {', '.join(extras)})"

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __bool__(self) -> bool:
        return bool(self.data)

    __hash__ = object.__hash__  # == is elementwise (ops/operators.py), so hash by identity

    # ---- backward ---------------------------------------------------------------------------

    def backward(
        self,
        grad: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
    ) -> None:
        """Add d(self)/d(leaf) * grad to the .grad of every leaf that requires grad.

        grad may be left out only for a one-element tensor (it is then 1). Gradients add up
        over calls until reset with `leaf.grad = None`. The graph is freed afterwards unless
        retain_graph is True; retain_graph defaults to create_graph, as in PyTorch.
        create_graph=True makes the gradients differentiable tensors (second derivatives).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of it was "
                "created with requires_grad=True (or it was computed under no_grad)"
            )
        root_grad = self._initial_grad(grad, "backward")
        retain = create_graph if retain_graph is None else retain_graph
        autograd.run_backward([self], [root_grad], retain, create_graph)

    def _initial_grad(self, grad: Any, caller: str) -> Tensor:
        """The gradient that starts a backward pass from this tensor, checked."""
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"{caller}: grad can be left out only for a one-element tensor; this one "
                    f"has shape {self.shape}. Pass a grad of that shape"
                )
            return Tensor._make(backend.get_array_module(self.data).ones_like(self.data))
        if not isinstance(grad, Tensor):
            if not backend.is_array(grad):
                grad = real_numpy_array(grad, caller)
            elif grad.dtype.kind not in "biuf":
                raise not_real_error(grad, caller)
            grad = Tensor._make(backend.get_array_module(self.data).asarray(grad, self.dtype))
        if grad.shape != self.shape:
            raise ValueError(
                f"{caller}: grad has shape {grad.shape} but the tensor has shape {self.shape}"
            )
        if type(grad.data) is not type(self.data):
            raise TypeError(
                f"{caller}: grad is on {grad.backend} but the tensor is on {self.backend}"
            )
        return grad

def _array_from_python(xp: Any, data: Any, dtype: Any) -> Any:
    """Python numbers and (nested) lists: float32 unless `dtype` says otherwise."""
    array = real_numpy_array(data, "Tensor")
    return xp.asarray(array.astype(dtype if dtype is not None else np.float32, copy=False))


def real_numpy_array(data: Any, caller: str) -> np.ndarray:
    """`data` (a number or a nested list of numbers) as a NumPy array of real numbers.

    Converting with a float dtype straight away would parse strings ("1.5" becomes 1.5) and
    turn None into nan, so the values are converted as they are and then checked.
    """
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as error:  # ragged lists, objects NumPy cannot read
        raise TypeError(f"{caller}: cannot make a tensor from {type(data).__name__} "
                        f"{data!r:.60} ({error}); {_EXPECTED}, of equal lengths") from error
    # An object array holds Python ints too large for int64 (fine) or non-numbers (not fine).
    kind = array.dtype.kind
    if kind not in "biufO" or (kind == "O" and _first_non_real(data) is not _NO_CULPRIT):
        raise not_real_error(data, caller)
    return array


_EXPECTED = "expected a number, a (nested) list of numbers, or an array"
_NO_CULPRIT = object()  # what _first_non_real returns when all is well (None can be a culprit)


def _first_non_real(data: Any) -> Any:
    """The first value in (nested) `data` that is not a real number, or _NO_CULPRIT."""
    if isinstance(data, (list, tuple)):
        for item in data:
            culprit = _first_non_real(item)
            if culprit is not _NO_CULPRIT:
                return culprit
        return _NO_CULPRIT
    if backend.is_array(data) or isinstance(data, Tensor):
        return _NO_CULPRIT if data.dtype.kind in "biuf" else data
    return _NO_CULPRIT if isinstance(data, (numbers.Real, np.bool_)) else data


def not_real_error(data: Any, caller: str) -> TypeError:
    """The TypeError for data that is not made of real numbers, naming the value at fault."""
    culprit = _first_non_real(data) if isinstance(data, (list, tuple)) else data
    if culprit is _NO_CULPRIT:
        culprit = data
    if isinstance(culprit, np.generic):
        what = f"{type(culprit).__name__} {culprit.item()!r}"
    elif backend.is_array(culprit) or isinstance(culprit, Tensor):
        what = f"{type(culprit).__name__} of dtype {culprit.dtype}"
    else:
        what = f"{type(culprit).__name__} {culprit!r:.60}"
    inside = "" if culprit is data else f" inside the {type(data).__name__} {data!r:.60}"
    if isinstance(culprit, complex) or getattr(getattr(culprit, "dtype", None), "kind", "") == "c":
        return TypeError(
            f"{caller}: got a complex value ({what}{inside}); minigrad supports real numbers "
            "only. Take .real or abs() first, or keep real and imaginary parts in two tensors"
        )
    return TypeError(f"{caller}: cannot make a tensor from {what}{inside}; {_EXPECTED}")


def zeros(shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros on the current backend."""
    xp = backend.module(backend.get_backend())
    return Tensor(xp.zeros(shape, dtype=dtype), requires_grad=requires_grad)


def ones(shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    """A tensor of ones on the current backend."""
    xp = backend.module(backend.get_backend())
    return Tensor(xp.ones(shape, dtype=dtype), requires_grad=requires_grad)


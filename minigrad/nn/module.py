"""Module: the base of every layer and model. Weights, modes, sub-modules and saved state.

A layer creates its weights in build(input_shape), which runs on its first call (as in Keras),
so BatchNorm() and Dense(10) need no input size. Weights come in two kinds, both created by
add_weight() and both part of the saved state:

- trainable weights (Parameter: kernel, bias, gamma, beta), which parameters() hands to an
  optimizer and which carry their regularizer and constraint;
- non-trainable state (plain tensors: moving_mean, moving_variance), which only the layer
  itself updates.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
from typing import Any, Iterator, Mapping

import numpy as np

from minigrad import backend
from minigrad.nn import config as configs
from minigrad.nn import constraints, initializers, regularizers, state
from minigrad.tensor import Tensor


class Parameter(Tensor):
    """A trainable weight: a leaf tensor that requires grad, with its regularizer and constraint."""

    __slots__ = ("regularizer", "constraint")

    def __init__(self, data: Any, regularizer: Any = None, constraint: Any = None) -> None:
        super().__init__(data, requires_grad=True)
        self.regularizer = regularizer
        self.constraint = constraint


class Module:
    """Base class of layers and models: call it as module(x, training=None).

    training=None means the module's own mode, set by train() and eval() (default: training);
    True or False overrides it for this call and, in a container, for everything inside.
    Subclasses define forward(x, training) and, if they have weights, build(input_shape).
    """

    def __init__(self, *, dtype: Any = "float32", trainable: bool = True, **unexpected: Any) -> None:
        # Layers pass their unknown keywords up here (super().__init__(**kwargs)), so this is
        # the one place that can say which layer got a misspelt argument, and what was meant.
        if unexpected:
            raise _unexpected_keyword_error(type(self), next(iter(unexpected)))
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"{type(self).__name__}: dtype must be a float type, got {dtype}")
        object.__setattr__(self, "_modules", {})
        self._weight_names: list[str] = []  # in creation order: the order of parameters()
        self.dtype = dtype
        self.training = True
        self._trainable = trainable
        self.built = False

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    # ---- calling ------------------------------------------------------------------------------

    def __call__(self, x: Any, training: bool | None = None, mask: Any = None) -> Tensor:
        if training is not None and not isinstance(training, (bool, np.bool_)):
            # bool("False") is True: a string or a number here is a slip, not a mode.
            raise TypeError(
                f"{type(self).__name__}: training must be True, False or None, got {training!r}"
            )
        if not isinstance(x, Tensor):
            x = Tensor(x)
        if mask is not None and "mask" not in inspect.signature(self.forward).parameters:
            raise TypeError(f"{type(self).__name__} takes no mask; only BatchNorm does")
        if not self.built:
            with backend.use_backend(x.backend):  # weights go where the data is
                self.build(x.shape)
        if mask is None:
            return self.forward(x, training)
        return self.forward(x, training, mask=mask)

    def forward(self, x: Tensor, training: bool | None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Create the weights for inputs of `input_shape` (None allowed for the batch axis)."""
        self.built = True

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """The shape of the output for an input of `input_shape` (the same, unless overridden)."""
        return tuple(input_shape)

    def add_weight(
        self,
        name: str,
        shape: tuple[int, ...],
        initializer: Any,
        trainable: bool = True,
        regularizer: Any = None,
        constraint: Any = None,
        dtype: Any = None,
    ) -> Tensor:
        """Create a weight on the current backend, store it as attribute `name`, and return it.

        dtype defaults to the module's; the weight is trainable unless trainable=False.
        """
        if name in self._weight_names:
            raise RuntimeError(f"{type(self).__name__}: weight {name!r} exists already (built twice?)")
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        values = np.asarray(initializers.get(initializer)(tuple(shape), dtype), dtype)
        if values.shape != tuple(shape):
            raise ValueError(
                f"{type(self).__name__}: initializer of {name!r} returned shape {values.shape}, "
                f"expected {tuple(shape)}"
            )
        if trainable:
            weight: Tensor = Parameter(
                values, regularizers.get(regularizer), constraints.get(constraint)
            )
            weight.requires_grad = self._trainable
        else:
            weight = Tensor(values)
        setattr(self, name, weight)
        self._weight_names.append(name)
        return weight

    # ---- modes --------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        """Set training mode (mode=True) or inference mode here and in every sub-module."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        """Set inference mode here and in every sub-module: BatchNorm uses its moving statistics."""
        return self.train(False)

    @property
    def trainable(self) -> bool:
        """False freezes the module and everything in it, as in Keras: no parameters(), no grad,
        and BatchNorm runs in inference mode even when called with training=True."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        for module in self.modules():
            module._trainable = bool(value)
            for _, weight in module._own_weights():
                if isinstance(weight, Parameter):
                    weight.requires_grad = bool(value)

    # ---- walking the tree ---------------------------------------------------------------------

    def modules(self) -> Iterator[Module]:
        """This module and every module inside it, depth first."""
        yield self
        for child in self._modules.values():
            yield from child.modules()

    def _own_weights(self) -> Iterator[tuple[str, Tensor]]:
        for name in self._weight_names:
            yield name, getattr(self, name)

    def named_weights(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """Every weight, trainable or not, with its dotted name ("0.kernel")."""
        for name, weight in self._own_weights():
            yield prefix + name, weight
        for child_name, child in self._modules.items():
            yield from child.named_weights(f"{prefix}{child_name}.")

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """The trainable weights with their dotted names, skipping frozen modules."""
        if not self._trainable:
            return
        for name, weight in self._own_weights():
            if isinstance(weight, Parameter):
                yield prefix + name, weight
        for child_name, child in self._modules.items():
            yield from child.named_parameters(f"{prefix}{child_name}.")

    def parameters(self) -> list[Tensor]:
        """The trainable weights, in a stable order: what an optimizer updates."""
        return [weight for _, weight in self.named_parameters()]

    def regularization_loss(self) -> Tensor:
        """The sum of every trainable weight's regularizer penalty (0 when there are none).

        Add it to the loss before backward(); it is in the graph, so its gradient reaches
        the weights.
        """
        total: Tensor | None = None
        for weight in self.parameters():
            if weight.regularizer is not None:
                penalty = weight.regularizer(weight)
                total = penalty if total is None else total + penalty
        if total is None:
            # A zero where the weights live, so that loss + regularization_loss() works on CuPy.
            weights = [weight for _, weight in self.named_weights()]
            where = weights[0].backend if weights else backend.get_backend()
            return Tensor._make(backend.module(where).zeros((), self.dtype))
        return total

    # ---- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every weight and every piece of non-trainable state, as NumPy copies by dotted name."""
        return {name: weight.numpy() for name, weight in self.named_weights()}

    def load_state_dict(self, values: Mapping[str, Any], source: str = "state_dict") -> None:
        """Copy `values` into the weights, in place (an optimizer keeps working).

        Every key must match a weight, with its shape, and every value must be one the layer
        can hold (a moving variance >= 0, a count >= 0: see check_state). Anything missing,
        extra, mis-shaped or invalid is an error (KeyError or ValueError naming the key and
        `source`), raised before any weight is written, so a failed load leaves the module
        exactly as it was.
        """
        arrays = {}
        for name, value in values.items():
            value = value.data if isinstance(value, Tensor) else value
            arrays[name] = backend.to_numpy(value) if backend.is_array(value) else np.asarray(value)
        self._check_layout({name: (a.shape, a.dtype) for name, a in arrays.items()}, source)
        weights = dict(self.named_weights())
        converted = {name: _converted(name, arrays[name], weight.dtype, source)
                     for name, weight in weights.items()}
        for prefix, module in self._named_modules():
            own = {name[len(prefix):]: value for name, value in converted.items()
                   if name.startswith(prefix) and "." not in name[len(prefix):]}
            module.check_state(own, source, prefix)
        for name, weight in weights.items():
            weight.data[...] = backend.to_backend(converted[name], weight.backend)

    def check_state(self, values: Mapping[str, np.ndarray], source: str, prefix: str = "") -> None:
        """Refuse values this module cannot hold (a ValueError naming the weight and `source`).

        values holds this module's own weights by name, already in their dtypes, and prefix
        is this module's place in the model ("1."), for the message; the base
        class accepts anything. load_state_dict calls it before writing a single weight.
        """

    def _named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child._named_modules(f"{prefix}{name}.")

    def _check_layout(self, layout: Mapping[str, tuple[tuple[int, ...], np.dtype]], source: str) -> None:
        """Names, shapes and dtypes against this module's weights; nothing is read or written."""
        weights = dict(self.named_weights())
        if not weights and layout:
            raise ValueError(
                f"load from {source}: {type(self).__name__} has no weights yet because it is "
                "not built; call it on a batch or call build(input_shape) first"
            )
        missing = [name for name in weights if name not in layout]
        if missing:
            raise KeyError(f"load from {source}: missing weight(s) {missing}")
        unexpected = [name for name in layout if name not in weights]
        if unexpected:
            raise KeyError(f"load from {source}: unexpected weight(s) {unexpected}")
        for name, weight in weights.items():
            shape, dtype = layout[name]
            if tuple(shape) != weight.shape:
                raise ValueError(
                    f"load from {source}: weight {name!r} has shape {tuple(shape)}, "
                    f"expected {weight.shape}"
                )
            if not np.can_cast(dtype, weight.dtype, "same_kind"):
                raise ValueError(
                    f"load from {source}: weight {name!r} has dtype {dtype}, "
                    f"which does not convert to {weight.dtype}"
                )

    def save_weights(self, path: str | os.PathLike) -> None:
        """Save state_dict() to `path` as .npz, atomically (see minigrad.nn.state)."""
        state.save_npz(path, self.state_dict())

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load weights saved by save_weights; a bad file leaves the module untouched.

        Never unpickles. The names, shapes and dtypes in the file's headers are checked
        before any data is read, and no member is read past the size it declares, so a
        file that lies about its size costs no more memory than the model itself.
        """
        source = repr(os.fspath(path))
        values = state.load_npz(path, check=lambda layout: self._check_layout(layout, source))
        self.load_state_dict(values, source=source)

    def to(self, name: str) -> Module:
        """Move every weight (and its gradient) to backend `name`, in place; returns self."""
        backend.module(name)  # a clear error for an unknown or unavailable backend
        for _, weight in self.named_weights():
            weight.data = backend.to_backend(weight.data, name)
            if weight.grad is not None:
                weight.grad = Tensor._make(backend.to_backend(weight.grad.data, name))
        return self

    # ---- configs ------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """Every constructor argument by name, as Keras's get_config(): the layer's own and
        Module's dtype (a name, "float32") and trainable, so that
        type(layer).from_config(layer.get_config()) is an equal layer, unbuilt.

        Each argument is read by config_value(name), from the attribute of the same name;
        initializers, regularizers and constraints become Keras 3's dicts (see
        minigrad.nn.config). An argument with no such attribute, or holding a callable that is
        not one of minigrad's, is an error naming the layer and the argument.
        """
        return {name: self.config_value(name) for name in configs.constructor_arguments(type(self), Module)}

    def config_value(self, name: str) -> Any:
        """Constructor argument `name` as get_config() holds it; override it for an argument
        stored under another name or in another form (and call super() for the others)."""
        return configs.argument_value(self, name)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Module:
        """A new, unbuilt layer from get_config()'s dict: cls(**config). A key the layer does
        not take is the TypeError of a misspelt keyword, naming the closest valid one."""
        if not isinstance(config, Mapping):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict, got {config!r:.80}")
        return cls(**{name: copy.deepcopy(value) for name, value in config.items()})

    # ---- printing -----------------------------------------------------------------------------

    def extra_repr(self) -> str:
        """The arguments shown between the parentheses of repr()."""
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): {child!r}".replace("\n", "\n  ") for name, child in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def _unexpected_keyword_error(layer: type, name: str) -> TypeError:
    """The TypeError for `layer(name=...)`: the closest argument the layer takes, or all of them."""
    valid = _keyword_arguments(layer)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keyword arguments: {', '.join(valid)}"
    return TypeError(f"{layer.__name__} got an unexpected keyword argument {name!r}; {hint}")


def _keyword_arguments(layer: type) -> list[str]:
    """The names `layer(...)` accepts as keywords: those of every __init__ from `layer` up to Module."""
    names: list[str] = []
    for cls in layer.__mro__[: layer.__mro__.index(Module) + 1]:
        if "__init__" not in vars(cls):
            continue
        for parameter in inspect.signature(vars(cls)["__init__"]).parameters.values():
            keyword = parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
            if keyword and parameter.name != "self" and parameter.name not in names:
                names.append(parameter.name)
    return names


def _converted(name: str, value: np.ndarray, dtype: np.dtype, source: str) -> np.ndarray:
    """`value` in `dtype`, refusing a conversion that changes it: an integer that does not fit
    (a uint64 that would wrap to -1) or a finite float that overflows to inf."""
    with np.errstate(over="ignore"):  # an overflow is reported below, by name
        result = value.astype(dtype)
    if value.dtype.kind in "iub" and dtype.kind in "iu":
        limits = np.iinfo(dtype)
        changed = value.size > 0 and (int(value.min()) < limits.min or int(value.max()) > limits.max)
    else:
        changed = not np.array_equal(np.isfinite(result), np.isfinite(value))
    if changed:
        raise ValueError(
            f"load from {source}: weight {name!r} holds values that {dtype} cannot represent "
            f"(its dtype is {value.dtype})"
        )
    return result

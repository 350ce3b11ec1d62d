"""Layer configs, as Keras's get_config() and from_config(), read off the constructor's signature.

A layer's config is every argument its constructor takes (its own and, through **kwargs, its
base classes' up to Module: dtype and trainable), each read from the attribute of the same
name, so an argument added to a layer is in its config without more code:

- an argument named *_initializer, *_regularizer or *_constraint is serialized by
  minigrad.nn.initializers, regularizers or constraints (Keras 3's dict form);
- a dtype becomes its name ("float32");
- any other value is copied as it is; a callable there is an error (a config holds data).

A layer that stores an argument differently overrides Module.config_value (Dense does, for
its activation).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np

from minigrad.nn import constraints, identifiers, initializers, regularizers

# How an argument is serialized, by the end of its name.
SERIALIZERS = {
    "_initializer": initializers.serialize,
    "_regularizer": regularizers.serialize,
    "_constraint": constraints.serialize,
}

_MISSING = object()


def constructor_arguments(cls: type, base: type) -> list[str]:
    """The keyword arguments `cls(...)` takes: those of cls.__init__, then of each __init__ up
    the MRO (to `base`) that the one below reaches through **kwargs.

    *args or a positional-only argument cannot come from a dict: that is a TypeError.
    """
    names: list[str] = []
    for owner in cls.__mro__[: cls.__mro__.index(base) + 1]:
        if "__init__" not in vars(owner):
            continue
        parameters = list(inspect.signature(vars(owner)["__init__"]).parameters.values())[1:]
        for p in parameters:
            if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
                raise TypeError(
                    f"{cls.__name__}.get_config: {owner.__name__}.__init__ takes {p.name!r} by position "
                    "only, which a config cannot hold; override get_config and from_config"
                )
            if p.kind != p.VAR_KEYWORD and p.name not in names:
                names.append(p.name)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break  # the base classes' arguments cannot be passed through
    return names


def argument_value(layer: Any, name: str) -> Any:
    """Constructor argument `name` of `layer`, as a config holds it (see the module docstring)."""
    layer_name = type(layer).__name__
    value = getattr(layer, name, _MISSING)
    if value is _MISSING:
        raise AttributeError(
            f"{layer_name}.get_config: constructor argument {name!r} is kept under no attribute "
            f"{name!r}; store it as self.{name} in __init__, or override config_value()"
        )
    for suffix, serialize in SERIALIZERS.items():
        if name.endswith(suffix):
            try:
                return serialize(value)
            except TypeError as error:
                raise TypeError(
                    f"{layer_name}.get_config: argument {name!r}: {error}, each as an object, "
                    "its name or its config dict"
                ) from None
    if isinstance(value, np.dtype):
        return value.name
    if callable(value):
        raise TypeError(
            f"{layer_name}.get_config: argument {name!r} holds the callable {value!r}, which a config "
            "cannot hold; pass data (a number, a string, a dict) or override config_value()"
        )
    return copy.deepcopy(value)


def layer_classes() -> dict[str, type]:
    """minigrad.nn's layer classes by name: the only classes a config's "class_name" may name."""
    from minigrad import nn  # here, not above: minigrad.nn imports this module

    classes = {name: getattr(nn, name) for name in nn.__all__}
    return {name: cls for name, cls in classes.items()
            if isinstance(cls, type) and issubclass(cls, nn.Module) and cls is not nn.Module}


def serialize_layer(layer: Any) -> dict[str, Any]:
    """{"module": "minigrad.nn", "class_name", "config", "registered_name"} for one of
    minigrad.nn's layers; another class is a TypeError (from_config could not rebuild it)."""
    return identifiers.serialize(layer, layer_classes(), "minigrad.nn", "layer")


def deserialize_layer(config: Any) -> Any:
    """The layer serialize_layer() described, looked up among minigrad.nn's layers only."""
    return identifiers.deserialize(config, layer_classes(), ("minigrad.nn",), "layer")

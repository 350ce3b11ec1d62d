"""Keras-style identifiers: a name such as "he_normal", "l2" or "max_norm", a config dict, or a callable.

Our own initializers, regularizers and constraints serialize the Keras 3 way, as a dict

    {"module": "minigrad.nn.initializers", "class_name": "RandomNormal",
     "config": {"mean": 0.0, "stddev": 0.05, "seed": None}, "registered_name": None}

whose "config" holds the constructor's arguments (get_config()). get() takes that dict back,
and Keras's own (module "keras.initializers", ...) too where its config keys are ours.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

KEYS = ("module", "class_name", "config", "registered_name")


def constructor_arguments(cls: type) -> list[str]:
    """The names of cls.__init__'s arguments, without self, *args and **kwargs."""
    return [p.name for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


class Configurable:
    """get_config() and from_config() for a class that keeps each constructor argument as the
    attribute of the same name (Constant.value, L2.l2, MaxNorm.max_value, ...)."""

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments by name: type(self)(**self.get_config()) is an equal copy."""
        return {name: copy.deepcopy(getattr(self, name)) for name in constructor_arguments(type(self))}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        """An instance from get_config()'s dict; a key the constructor does not take is a ValueError."""
        expected = constructor_arguments(cls)
        unknown = sorted(set(config) - set(expected))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown config key(s) {unknown}; expected some of {expected}"
            )
        return cls(**copy.deepcopy(config))


def serialize(obj: Any, classes: dict[str, type], module: str, kind: str) -> dict[str, Any]:
    """obj as {"module", "class_name", "config", "registered_name"}, if its class is one of
    `classes` (by name: the classes of `module`); anything else is a TypeError."""
    cls = type(obj)
    if classes.get(cls.__name__) is not cls:
        raise TypeError(
            f"cannot serialize the {kind} {obj!r}: a config can hold only {module}'s own "
            f"{kind}s ({', '.join(classes)})"
        )
    return {"module": module, "class_name": cls.__name__, "config": obj.get_config(),
            "registered_name": None}


def deserialize(config: Any, classes: dict[str, type], modules: tuple[str, ...], kind: str) -> Any:
    """The object serialize() described. Its "module", if given, must be one of `modules` (ours
    first, then maybe Keras's); a dict that names no class of ours is a ValueError."""
    if not isinstance(config, dict):
        raise ValueError(f"a {kind} config must be a dict with keys among {list(KEYS)}, got {config!r}")
    unknown = sorted(set(config) - set(KEYS), key=str)
    if unknown:
        raise ValueError(f"{kind} config: unknown key(s) {unknown}; expected keys among {list(KEYS)}")
    if config.get("module", modules[0]) not in modules:
        raise ValueError(f"{kind} config: module {config['module']!r} is not one of {list(modules)}")
    name = config.get("class_name")
    if name not in classes:
        raise ValueError(f"unknown {kind} class_name {name!r}; expected one of {list(classes)}")
    if config.get("registered_name") not in (None, name):
        raise ValueError(
            f"{kind} config: registered_name {config['registered_name']!r} is not None or {name!r}; "
            "minigrad has no registry of custom objects"
        )
    arguments = config.get("config", {})
    if not isinstance(arguments, dict):
        raise ValueError(f"{kind} config of {name}: 'config' must be a dict, got {arguments!r}")
    return classes[name].from_config(arguments)


def resolve(identifier: Any, by_name: dict[str, type], kind: str, callable_form: str,
            allow_none: bool = True, classes: dict[str, type] | None = None,
            modules: tuple[str, ...] = ()) -> Any:
    """by_name[identifier]() for a name, the identifier itself for a callable, None for None,
    and deserialize(identifier, classes, modules, kind) for a config dict.

    kind ("initializer", ...) and callable_form ("callable(shape, dtype)", ...) word the errors.
    """
    if identifier is None and allow_none:
        return None
    if isinstance(identifier, dict) and classes is not None:
        return deserialize(identifier, classes, modules, kind)
    if isinstance(identifier, str):
        if identifier not in by_name:
            raise ValueError(
                f"unknown {kind} {identifier!r}; expected one of {sorted(by_name)}"
                f"{', None,' if allow_none else ''} or a {callable_form}"
            )
        return by_name[identifier]()
    if callable(identifier):
        return identifier
    article = "an" if kind[0] in "aeiou" else "a"
    raise TypeError(
        f"{article} {kind} must be {'None, ' if allow_none else ''}a name or a {callable_form}, "
        f"got {identifier!r}; a config dict such as serialize() returns is accepted too"
    )

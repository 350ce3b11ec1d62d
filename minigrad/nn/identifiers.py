"""Keras-style identifiers: a name such as "he_normal", "l2" or "max_norm", or a callable."""

from __future__ import annotations

from typing import Any


def resolve(identifier: Any, by_name: dict[str, type], kind: str, callable_form: str,
            allow_none: bool = True) -> Any:
    """by_name[identifier]() for a name, the identifier itself for a callable, None for None.

    kind ("initializer", ...) and callable_form ("callable(shape, dtype)", ...) word the errors.
    """
    if identifier is None and allow_none:
        return None
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
        f"got {identifier!r}"
    )

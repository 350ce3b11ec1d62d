"""Which array library holds the numbers: NumPy (CPU) or CuPy (GPU).

This is the only module that imports CuPy. Everything else asks it for the array module of
an array (`get_array_module`), the array-module pattern of Chainer and DeZero: an operation
looks at the type of its operands' arrays, so a tensor made on CuPy stays on CuPy whatever
the global default. The default (`set_backend`, `use_backend`, or the environment variable
MINIGRAD_BACKEND) only decides where *new* tensors are made.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType
from typing import Iterator

import numpy as np

BACKENDS = ("numpy", "cupy")

_current = "numpy"
_cupy: ModuleType | None = None  # the CuPy module, once it has been loaded and found a device


def _check_name(name: object) -> str:
    if name not in BACKENDS:
        valid = ", ".join(repr(b) for b in BACKENDS)
        raise ValueError(f"unknown backend {name!r}; valid backends are {valid}")
    return name  # type: ignore[return-value]


def _load_cupy() -> ModuleType:
    """Import CuPy and make sure it can reach a CUDA device; raise a clear error if not."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as error:
        raise ImportError(
            "the 'cupy' backend needs CuPy, which is not installed "
            f"({error}). Install the gpu extra: pip install 'minigrad[gpu]' for CUDA 12 "
            "or 'minigrad[gpu-cuda13]' for CUDA 13"
        ) from error
    try:
        device_count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CuPy raises its own CUDARuntimeError type
        raise RuntimeError(
            f"CuPy is installed but found no usable CUDA device: {error}"
        ) from error
    if device_count < 1:
        raise RuntimeError("CuPy is installed but found no usable CUDA device: 0 devices")
    _cupy = cupy
    return cupy


def cupy_unavailable_reason() -> str | None:
    """Why the CuPy backend cannot be used here, or None when it can."""
    try:
        _load_cupy()
    except (ImportError, RuntimeError) as error:
        return str(error)
    return None


def module(name: str) -> ModuleType:
    """The array module (numpy or cupy) for a backend name."""
    if _check_name(name) == "numpy":
        return np
    return _load_cupy()


def set_backend(name: str) -> None:
    """Make `name` ("numpy" or "cupy") the backend on which new tensors are created."""
    global _current
    module(name)  # validate first, so a failed switch leaves the old backend in place
    _current = name


def get_backend() -> str:
    """The name of the backend on which new tensors are created."""
    return _current


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: create new tensors on `name` inside the block, then restore."""
    previous = _current
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def backend_of(array: object) -> str:
    """The backend name ("numpy" or "cupy") that holds `array`."""
    if isinstance(array, (np.ndarray, np.generic)):
        return "numpy"
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return "cupy"
    raise TypeError(f"expected a NumPy or CuPy array, got {type(array).__name__}")


def is_array(obj: object) -> bool:
    """True for a NumPy or CuPy array (or NumPy scalar)."""
    try:
        backend_of(obj)
    except TypeError:
        return False
    return True


def get_array_module(array: object) -> ModuleType:
    """numpy or cupy, whichever holds `array` (the array-module pattern)."""
    if type(array) is np.ndarray:  # the common case, checked first because it is cheapest
        return np
    return module(backend_of(array))


def to_backend(array: object, name: str) -> object:
    """`array` moved to backend `name` (the same object if it is already there)."""
    target = module(name)
    if backend_of(array) == name:
        return array
    if name == "numpy":
        return array.get()  # type: ignore[attr-defined]  # CuPy -> host copy
    return target.asarray(array)


def to_numpy(array: object) -> np.ndarray:
    """A NumPy copy of `array`, from either backend."""
    if backend_of(array) == "numpy":
        return np.array(array, copy=True)
    return array.get()  # type: ignore[attr-defined]


def add_at(target: object, index: object, values: object) -> None:
    """target[index] += values, adding once per repeated index (NumPy's ufunc.at)."""
    if backend_of(target) == "numpy":
        np.add.at(target, index, values)
    else:
        import cupyx  # ships with CuPy

        cupyx.scatter_add(target, index, values)


def _init_from_environment() -> None:
    name = os.environ.get("MINIGRAD_BACKEND")
    if name:
        try:
            set_backend(name)
        except (ValueError, ImportError, RuntimeError) as error:
            raise type(error)(f"MINIGRAD_BACKEND={name!r}: {error}") from error


_init_from_environment()

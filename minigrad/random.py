"""minigrad's randomness: one NumPy generator, seeded by manual_seed.

Every random number minigrad draws (these functions, and the weight initializers built on
them) comes from this one generator, on the CPU, and is then moved to the tensor's backend.
So a seeded run draws the same numbers on NumPy and on CuPy, and reproduces bit for bit on
NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minigrad.tensor import Tensor

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed all of minigrad's randomness, so that a run reproduces exactly."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: expected a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def generator() -> np.random.Generator:
    """The NumPy generator behind minigrad's randomness (seeded by manual_seed)."""
    return _generator


def _tensor(array: np.ndarray, dtype: Any, requires_grad: bool) -> Tensor:
    # Tensor() moves the array to the current backend.
    return Tensor(array.astype(dtype, copy=False), requires_grad=requires_grad)


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape


def randn(*shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    """Standard normal samples of `shape` on the current backend."""
    return _tensor(_generator.standard_normal(_shape(shape)), dtype, requires_grad)


def rand(*shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) of `shape` on the current backend."""
    return _tensor(_generator.random(_shape(shape)), dtype, requires_grad)

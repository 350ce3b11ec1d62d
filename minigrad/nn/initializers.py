"""Weight initializers, by their Keras names, as config dicts or as callables.

An initializer is called as `initializer(shape, dtype)` and returns a NumPy array. The random
ones draw from minigrad's one generator, so `mg.manual_seed(n)` makes a model's starting
weights reproducible (on NumPy and CuPy alike: the layer moves the array to its backend);
given seed=n instead, one draws the same values at every call, as a seeded Keras initializer.
The formulas are Keras's (keras.initializers), so a Keras user gets the scale they expect.
serialize() gives Keras 3's dict form, which get() takes back.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from minigrad import random
from minigrad.nn import identifiers

Initializer = Callable[[tuple[int, ...], Any], Any]

# The standard deviation of a unit normal truncated to [-2, 2]; dividing by it makes the
# truncated draws have the requested standard deviation (Keras's constant).
_TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shape, as Keras counts them.

    A vector counts its length both ways; a matrix (in, out) is (in, out); a convolution
    kernel (..., in, out) multiplies both by its receptive field.
    """
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class Constant(identifiers.Configurable):
    """Every value equal to `value`."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value

    def __call__(self, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        return np.full(shape, self.value, dtype=dtype)


class Zeros(Constant):
    """All zeros."""

    def __init__(self) -> None:
        super().__init__(0.0)


class Ones(Constant):
    """All ones."""

    def __init__(self) -> None:
        super().__init__(1.0)


def _generator(seed: int | None) -> np.random.Generator:
    """minigrad's generator for seed None, else a fresh one seeded with `seed`."""
    return random.generator() if seed is None else np.random.default_rng(seed)


def _check_seed(seed: Any, owner: str) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"{owner}: seed must be None or an int >= 0, got {seed!r}")


class RandomNormal(identifiers.Configurable):
    """Normal draws with `mean` and `stddev` (Keras default stddev 0.05).

    seed None draws from minigrad's generator (mg.manual_seed); an int draws the same values
    at every call, as in Keras.
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        _check_seed(seed, "RandomNormal")
        self.mean = mean
        self.stddev = stddev
        self.seed = None if seed is None else int(seed)

    def __call__(self, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        draws = _generator(self.seed).normal(self.mean, self.stddev, size=shape)
        return draws.astype(dtype)


class VarianceScaling(identifiers.Configurable):
    """Draws whose variance is scale / n, n the fan in, fan out, or their average.

    distribution "uniform" draws from [-limit, limit] with limit = sqrt(3 scale / n);
    "truncated_normal" draws a normal cut at two standard deviations and rescaled so that
    the standard deviation is sqrt(scale / n). Glorot and He are this with fixed settings.
    seed as in RandomNormal. The defaults are Keras's.
    """

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed: int | None = None) -> None:
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: mode {mode!r} is not fan_in, fan_out or fan_avg")
        if distribution not in ("uniform", "truncated_normal"):
            raise ValueError(
                f"VarianceScaling: distribution {distribution!r} is not uniform or truncated_normal"
            )
        _check_seed(seed, type(self).__name__)
        self.scale = scale
        self.mode = mode
        self.distribution = distribution
        self.seed = None if seed is None else int(seed)

    def __call__(self, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        fan_in, fan_out = compute_fans(tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        generator = _generator(self.seed)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return generator.uniform(-limit, limit, size=shape).astype(dtype)
        stddev = math.sqrt(variance) / _TRUNCATED_STD
        return (_truncated_unit_normal(shape, generator) * stddev).astype(dtype)


def _truncated_unit_normal(shape: tuple[int, ...], generator: np.random.Generator) -> np.ndarray:
    """Unit normal draws, with every draw outside [-2, 2] drawn again until it falls inside."""
    draws = generator.standard_normal(shape)
    outside = np.abs(draws) > 2.0
    while outside.any():
        draws[outside] = generator.standard_normal(int(outside.sum()))
        outside = np.abs(draws) > 2.0
    return draws


class GlorotUniform(VarianceScaling):
    """Uniform in +-sqrt(6 / (fan_in + fan_out)): Keras's default for Dense kernels."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_avg", "uniform", seed)


class GlorotNormal(VarianceScaling):
    """Truncated normal with stddev sqrt(2 / (fan_in + fan_out))."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)


class HeUniform(VarianceScaling):
    """Uniform in +-sqrt(6 / fan_in): suited to ReLU layers."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(2.0, "fan_in", "uniform", seed)


class HeNormal(VarianceScaling):
    """Truncated normal with stddev sqrt(2 / fan_in): suited to ReLU layers."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(2.0, "fan_in", "truncated_normal", seed)


BY_NAME: dict[str, type] = {
    "zeros": Zeros,
    "ones": Ones,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "random_normal": RandomNormal,
}


# Our classes by class name: what a config dict's "class_name" may be.
CLASSES: dict[str, type] = {cls.__name__: cls for cls in (
    Constant, Zeros, Ones, RandomNormal, VarianceScaling, GlorotUniform, GlorotNormal, HeUniform, HeNormal)}

_MODULES = (__name__, "keras.initializers")  # a config dict's "module": ours, or Keras's


def get(identifier: str | dict | Initializer) -> Initializer:
    """An initializer from a Keras name ("glorot_uniform", ...), a config dict as serialize()
    returns, or a callable(shape, dtype)."""
    return identifiers.resolve(
        identifier, BY_NAME, "initializer", "callable(shape, dtype)", allow_none=False,
        classes=CLASSES, modules=_MODULES,
    )


def serialize(initializer: str | dict | Initializer) -> dict:
    """Keras 3's form of one of our initializers (or of a name or a dict for one):
    {"module", "class_name", "config", "registered_name"}. Any other callable is a TypeError."""
    return identifiers.serialize(get(initializer), CLASSES, __name__, "initializer")

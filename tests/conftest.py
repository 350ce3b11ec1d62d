"""Shared fixtures: every test that takes `backend` runs once per backend.

The CuPy case is skipped, with the reason shown, only where this machine has no GPU. On a
machine with a GPU, a missing or broken CuPy makes those tests fail instead of skip.
"""

import os
import shutil

os.environ.setdefault("KERAS_BACKEND", "numpy")  # Keras, our reference, runs on NumPy

import numpy as np
import pytest

import minigrad as mg
from minigrad import autograd
from minigrad import backend as backends

CUPY_PROBLEM = backends.cupy_unavailable_reason()
GPU_PRESENT = os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi") is not None
SKIP_CUPY = CUPY_PROBLEM is not None and not GPU_PRESENT

BACKENDS = [
    "numpy",
    pytest.param(
        "cupy",
        marks=pytest.mark.skipif(
            SKIP_CUPY, reason=f"no GPU on this machine, so no CuPy backend ({CUPY_PROBLEM})"
        ),
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The backend name; new tensors are created on it for the length of the test."""
    with mg.use_backend(request.param):
        yield request.param


@pytest.fixture(autouse=True)
def _isolate_global_state():
    """No test leaks a backend choice or a grad mode into the next one."""
    previous = mg.get_backend()
    yield
    backends._current = previous
    autograd._grad_state.enabled = True  # the grad mode of this (the main) thread


def normal(shape, seed=0, away_from_zero=False, positive=False):
    """Reproducible float64 test values; optionally kept off 0 (for relu, log, 1/x)."""
    values = np.random.default_rng(seed).standard_normal(shape)
    if positive:
        return np.abs(values) + 0.5
    if away_from_zero:
        return values + np.where(values >= 0, 0.2, -0.2)
    return values

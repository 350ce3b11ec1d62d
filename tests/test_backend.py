"""Choosing the backend, and the errors when a choice cannot be honoured."""

import os
import subprocess
import sys
import types

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend as backends
from conftest import SKIP_CUPY


def _python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != "MINIGRAD_BACKEND"}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment)


def test_numpy_is_the_default():
    result = _python("import minigrad; print(minigrad.get_backend())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "numpy"


def test_the_environment_variable_chooses_the_backend():
    result = _python("import minigrad; print(minigrad.get_backend())", MINIGRAD_BACKEND="numpy")
    assert result.stdout.strip() == "numpy"
    bad = _python("import minigrad", MINIGRAD_BACKEND="tpu")
    assert bad.returncode != 0
    assert "MINIGRAD_BACKEND='tpu'" in bad.stderr and "'numpy', 'cupy'" in bad.stderr


def test_an_unknown_name_lists_the_valid_ones_and_changes_nothing():
    with pytest.raises(ValueError, match=r"unknown backend 'tpu'; valid backends are 'numpy', 'cupy'"):
        mg.set_backend("tpu")
    assert mg.get_backend() == "numpy"
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        mg.Tensor([1.0]).to("gpu")


def test_use_backend_restores_the_previous_one_even_after_an_error():
    with pytest.raises(KeyError):
        with mg.use_backend("numpy"):
            raise KeyError("inside")
    assert mg.get_backend() == "numpy"


@pytest.fixture
def no_cupy_loaded(monkeypatch):
    monkeypatch.setattr(backends, "_cupy", None)
    return monkeypatch


def test_cupy_requested_but_not_installed_names_the_gpu_extra(no_cupy_loaded):
    no_cupy_loaded.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    with pytest.raises(ImportError, match=r"needs CuPy, which is not installed.*minigrad\[gpu\]"):
        mg.set_backend("cupy")
    assert mg.get_backend() == "numpy"


def _fake_cupy(device_count=None, error=None):
    def get_device_count():
        if error is not None:
            raise error
        return device_count

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    fake.ndarray = type("ndarray", (), {"dtype": np.dtype(np.float32), "shape": (2,)})
    return fake


@pytest.mark.parametrize(
    "fake, detail",
    [
        (_fake_cupy(error=RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")),
         "cudaErrorNoDevice"),
        (_fake_cupy(device_count=0), "0 devices"),
    ],
)
def test_cupy_installed_without_a_device(no_cupy_loaded, fake, detail):
    no_cupy_loaded.setitem(sys.modules, "cupy", fake)
    with pytest.raises(RuntimeError, match=f"CuPy is installed but found no usable CUDA device: .*{detail}"):
        mg.set_backend("cupy")
    assert mg.get_backend() == "numpy"


def test_mixing_numpy_and_cupy_tensors_names_both(no_cupy_loaded):
    fake = _fake_cupy(device_count=1)
    no_cupy_loaded.setattr(backends, "_cupy", fake)
    on_gpu = mg.Tensor._make(fake.ndarray(), requires_grad=True)
    on_cpu = mg.Tensor(np.ones(2, dtype=np.float32))
    with pytest.raises(TypeError, match=r"Mul: cannot mix backends.*numpy and cupy"):
        on_cpu * on_gpu
    with pytest.raises(TypeError, match=r"Add: cannot mix backends.*cupy and numpy"):
        on_gpu + on_cpu


def test_operations_stay_on_the_backend_of_their_operands(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    with mg.use_backend("numpy"):
        y = (x * 2).exp().sum()
    assert y.backend == backend
    y.backward()
    assert x.grad.backend == backend


def test_to_moves_data_and_gradient(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    moved = x.to("numpy")
    assert moved.backend == "numpy" and moved.requires_grad and moved.is_leaf
    np.testing.assert_array_equal(moved.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(moved.grad.numpy(), [3.0, 3.0])
    assert moved.grad.backend == "numpy"
    assert x.to(backend) is x


def test_to_refuses_a_tensor_inside_a_graph(no_cupy_loaded):
    no_cupy_loaded.setattr(backends, "_cupy", _fake_cupy(device_count=1))
    x = mg.Tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"moves leaf tensors only.*Mul"):
        (x * 2).to("cupy")


@pytest.mark.skipif(SKIP_CUPY, reason="no GPU on this machine, so no CuPy backend to move to")
def test_a_cupy_tensor_stays_on_cupy_and_refuses_numpy_partners():
    with mg.use_backend("cupy"):
        x = mg.Tensor([1.0, 2.0], requires_grad=True)
    assert x.backend == "cupy" and (x * 2).backend == "cupy"
    with pytest.raises(TypeError, match="cannot mix backends.*cupy and numpy"):
        x + mg.Tensor([1.0, 1.0])
    (x * x).sum().backward()
    back = x.to("numpy")
    assert back.backend == "numpy"
    np.testing.assert_array_equal(back.grad.numpy(), [2.0, 4.0])
    assert back.to("cupy").backend == "cupy"

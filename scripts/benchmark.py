"""minigrad's benchmark suite, with references measured in the same run.

    python scripts/benchmark.py [--repeats N] [--threads N] [--memory-steps N] [--quick]
    MINIGRAD_BACKEND=cupy python scripts/benchmark.py        (the GPU; PyTorch CUDA as reference)

On the current backend, medians over `repeats` timings after a warm-up:

1. bn:     BatchNorm forward + backward, training mode, float32, on (1024, 1024) (features
           last) and on (64, 32, 28, 28) with axis=1.
2. mlp:    one SGD training step (momentum 0.9) of a 784-512-512-10 MLP with BatchNorm and
           ReLU after each hidden Dense, batch 256, softmax cross-entropy.
3. engine: a chain of 500 elementwise operations on a 4-element tensor, forward + backward,
           per operation.
4. memory: 1,000 training steps of (2), with Python's cyclic garbage collector switched off,
           so that anything a reference cycle held would pile up: the peak, and the growth
           per step between the first and last tenth of the run.
5. conv:   Conv2D forward + backward on two shapes, and a training step of the convnet
           lesson's network (scripts/benchmark_conv.py).

References, when installed: PyTorch (the CPU build with the same thread count; CUDA on the
GPU), and a hand-written NumPy BatchNorm (the textbook forward and closed-form backward).
Before timing, each workload checks that minigrad and the references compute the same
values. Ratios are minigrad / reference from this run, because absolute times on a shared
machine drift.
"""

from __future__ import annotations

import argparse
import array
import gc
import os
import platform
import statistics
import sys
import time
import tracemalloc
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark_conv  # noqa: E402  (section 5, the convolutions)

CHAIN_LENGTH = 500
BN_SHAPES = [((1024, 1024), -1), ((64, 32, 28, 28), 1)]
MLP_SIZES, MLP_BATCH = (784, 512, 512, 10), 256


# ---- timing --------------------------------------------------------------------------------

class Clock:
    """Times workloads on the CPU, or on the GPU with a synchronize after each run."""

    def __init__(self, synchronize: Callable[[], None] = lambda: None):
        self.synchronize = synchronize

    def medians(self, works: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
        """Median wall time of each work() over `repeats` runs, after `warmup` untimed runs.

        The workloads take turns (minigrad, then each reference, then minigrad again), so a
        slow spell of a shared machine slows them alike instead of skewing one ratio.
        """
        for _ in range(warmup):
            for work in works.values():
                work()
        self.synchronize()
        times: dict[str, list[float]] = {name: [] for name in works}
        for _ in range(repeats):
            for name, work in works.items():
                start = time.perf_counter()
                work()
                self.synchronize()
                times[name].append(time.perf_counter() - start)
        return {name: statistics.median(values) for name, values in times.items()}


# ---- 1. BatchNorm forward + backward ---------------------------------------------------------

def bn_inputs(shape: tuple[int, ...]):
    import numpy as np

    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 2.0 + 0.5).astype(np.float32)
    grad = rng.normal(size=shape).astype(np.float32)
    return x, grad


def minigrad_bn(shape, axis):
    """Returns (step, outputs): step runs forward + backward; outputs gives (y, dx) as NumPy."""
    import minigrad as mg

    x_values, grad_values = bn_inputs(shape)
    x, grad = mg.Tensor(x_values, requires_grad=True), mg.Tensor(grad_values)
    layer = mg.nn.BatchNorm(axis=axis, epsilon=1e-5)
    layer.build(shape)
    result = {}

    def step():
        x.grad = layer.gamma.grad = layer.beta.grad = None
        result["y"] = y = layer(x, training=True)
        y.backward(grad)

    def outputs():
        step()
        return result["y"].numpy(), x.grad.numpy()

    return step, outputs


def numpy_bn(shape, axis):
    """The textbook NumPy BatchNorm: forward, then the closed-form backward, no tricks."""
    import numpy as np

    x, grad = bn_inputs(shape)
    axes = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    broadcast = tuple(1 if i in axes else n for i, n in enumerate(shape))
    gamma, beta = np.ones(broadcast, np.float32), np.zeros(broadcast, np.float32)
    m = x.size // shape[axis]
    result = {}

    def step():
        mean = x.mean(axis=axes, keepdims=True)
        variance = x.var(axis=axes, keepdims=True)
        inv_std = 1.0 / np.sqrt(variance + 1e-5)
        x_hat = (x - mean) * inv_std
        y = gamma * x_hat + beta
        d_x_hat = grad * gamma
        d_x = inv_std / m * (m * d_x_hat - d_x_hat.sum(axis=axes, keepdims=True)
                             - x_hat * (d_x_hat * x_hat).sum(axis=axes, keepdims=True))
        result["y"], result["dx"] = y, d_x
        return (grad * x_hat).sum(axis=axes), grad.sum(axis=axes)

    def outputs():
        step()
        return result["y"], result["dx"]

    return step, outputs


def torch_bn(shape, axis, device):
    import torch

    x_values, grad_values = bn_inputs(shape)
    x = torch.tensor(x_values, device=device, requires_grad=True)
    grad = torch.tensor(grad_values, device=device)
    layer = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(shape[axis]).to(device)
    result = {}

    def step():
        x.grad = layer.weight.grad = layer.bias.grad = None
        result["y"] = y = layer(x)
        y.backward(grad)

    def outputs():
        step()
        return result["y"].detach().cpu().numpy(), x.grad.cpu().numpy()

    return step, outputs


# ---- 2. one MLP training step ----------------------------------------------------------------

def mlp_data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((MLP_BATCH, MLP_SIZES[0]), dtype=np.float32)
    labels = rng.integers(0, MLP_SIZES[-1], size=MLP_BATCH)
    return x, labels


def minigrad_mlp():
    import minigrad as mg
    from minigrad.nn import functional as F

    layers = []
    for units in MLP_SIZES[1:-1]:
        layers += [mg.nn.Dense(units), mg.nn.BatchNorm(), mg.nn.ReLU()]
    model = mg.nn.Sequential(*layers, mg.nn.Dense(MLP_SIZES[-1]))
    model.build((None, MLP_SIZES[0]))
    optimizer = mg.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x_values, label_values = mlp_data()
    x, labels = mg.Tensor(x_values), mg.Tensor(label_values).data

    def step():
        optimizer.zero_grad()
        loss = F.softmax_cross_entropy(model(x, training=True), labels)
        loss.backward()
        optimizer.step()
        return loss

    return step


def torch_mlp(device):
    import torch

    layers: list[Any] = []
    for n_in, n_out in zip(MLP_SIZES[:-2], MLP_SIZES[1:-1]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.BatchNorm1d(n_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(MLP_SIZES[-2], MLP_SIZES[-1])).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x_values, label_values = mlp_data()
    x, labels = torch.tensor(x_values, device=device), torch.tensor(label_values, device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        return loss

    return step


# ---- 3. engine overhead ----------------------------------------------------------------------

def _chain(x, a, b):
    """The op chain: *, +, -, / with a tensor operand, cycled; values stay near x."""
    y = x
    for _ in range(CHAIN_LENGTH // 4):
        y = y * a
        y = y + b
        y = y - b
        y = y / a
    return y


def minigrad_engine():
    import numpy as np

    import minigrad as mg

    x = mg.Tensor(np.linspace(0.5, 1.5, 4, dtype=np.float32), requires_grad=True)
    a = mg.Tensor(np.full(4, 1.01, dtype=np.float32))
    b = mg.Tensor(np.full(4, 0.01, dtype=np.float32))

    def step():
        x.grad = None
        _chain(x, a, b).sum().backward()

    return step


def torch_engine(device):
    import torch

    x = torch.linspace(0.5, 1.5, 4, dtype=torch.float32, device=device, requires_grad=True)
    a = torch.full((4,), 1.01, device=device)
    b = torch.full((4,), 0.01, device=device)

    def step():
        x.grad = None
        _chain(x, a, b).sum().backward()

    return step


def numpy_engine():
    """Forward and a hand-written backward on raw arrays: what the arithmetic alone costs."""
    import numpy as np

    x = np.linspace(0.5, 1.5, 4, dtype=np.float32)
    a = np.full(4, 1.01, dtype=np.float32)
    b = np.full(4, 0.01, dtype=np.float32)

    def step():
        _chain(x, a, b)
        grad = np.ones_like(x)
        for _ in range(CHAIN_LENGTH // 4):  # back through / a, - b, + b, * a
            grad = grad / a
            grad = grad * a
        return grad

    return step


# ---- 4. memory over training ------------------------------------------------------------------

def memory_profile(step: Callable[[], object], steps: int, backend: str) -> dict[str, float]:
    """Bytes held after each step (array data included), with the cyclic collector off.

    NumPy reports its array buffers to tracemalloc; on CuPy the memory pool's used bytes are
    read instead. Returns the peak; the growth per step from the first tenth of the steps to
    the last; how many objects a final gc.collect() found in reference cycles; and the growth
    per step measured after that collect, from a baseline taken the same way. (A full collect
    also empties Python's free lists of small objects, which fill up slowly and show as a
    small, bounded growth before it.)
    """
    if backend == "cupy":
        from minigrad import backend as mg_backend

        pool = mg_backend.module("cupy").get_default_memory_pool()
        current, peak_so_far = pool.used_bytes, pool.total_bytes
    else:
        tracemalloc.start()
        current, peak_so_far = (lambda: tracemalloc.get_traced_memory()[0]), (lambda: tracemalloc.get_traced_memory()[1])
    for _ in range(10):  # warm-up, traced: momentum buffers, gradients, lazily built kernels
        step()
    held = array.array("q", bytes(8 * steps))  # allocated before the baseline: no growth of its own
    gc.collect()
    baseline = current()
    gc.disable()  # a reference cycle now keeps its arrays until the end: it would show as growth
    try:
        for index in range(steps):
            step()
            held[index] = current()
        peak = peak_so_far()
        cycle_objects = gc.collect()
        after_collect = current()
    finally:
        gc.enable()
        if backend != "cupy":
            tracemalloc.stop()
    tenth = max(1, steps // 10)
    first, last = statistics.mean(held[:tenth]), statistics.mean(held[-tenth:])
    return {"peak": peak, "growth_per_step": (last - first) / (steps - tenth), "held": held[-1],
            "cycle_objects": cycle_objects, "growth_after_collect": (after_collect - baseline) / steps}


# ---- the run ---------------------------------------------------------------------------------

def check_same(name: str, ours: tuple, theirs: tuple, reference: str) -> None:
    """Stop the benchmark if minigrad and a reference disagree: timing wrong answers is useless."""
    import numpy as np

    for label, a, b in zip(("y", "dl/dx", "dl/dkernel"), ours, theirs):
        error = float(np.max(np.abs(a - b)))
        if error > 2e-3 * max(1.0, float(np.max(np.abs(b)))):  # float32 sums of many terms: relative
            sys.exit(f"benchmark: {name}: minigrad's {label} differs from {reference}'s by {error:.3g}")


def report(label: str, medians: dict[str, float], unit: str, scale: float) -> None:
    """One line per framework: its median, and minigrad's ratio to it."""
    ours = medians["minigrad"]
    print(f"  {label:28s} {ours * scale:9.2f} {unit}   minigrad")
    for name, theirs in medians.items():
        if name != "minigrad":
            what = "hand-written NumPy" if name == "NumPy" else name
            print(f"    {what:26s} {theirs * scale:9.2f} {unit}   minigrad / {name} = **{ours / theirs:.2f}**")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per workload (median)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and PyTorch threads")
    parser.add_argument("--memory-steps", type=int, default=1000, help="training steps for the memory run")
    parser.add_argument("--quick", action="store_true", help="3 repeats, 30 memory steps: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.memory_steps = 3, 30
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)  # before NumPy loads its BLAS

    import numpy as np

    import minigrad as mg

    backend = mg.get_backend()
    try:
        import torch

        torch.set_num_threads(args.threads)
        device = "cuda" if backend == "cupy" else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    if backend == "cupy":
        cupy = mg.backend.module("cupy")

        def synchronize() -> None:  # wait for every queued GPU kernel, minigrad's and PyTorch's
            cupy.cuda.Device().synchronize()
            if torch is not None:
                torch.cuda.synchronize()

        clock = Clock(synchronize)
        gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        where = f"GPU {gpu}, CuPy {cupy.__version__}"
    else:
        clock = Clock()
        where = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"backend {backend}: {where}; threads {args.threads}; Python {platform.python_version()}, "
          f"NumPy {np.__version__}, PyTorch {torch.__version__ if torch is not None else 'not installed'}; "
          f"medians of {args.repeats}, minigrad and the references taking turns")

    print("\n1. BatchNorm forward + backward, training mode, float32")
    for shape, axis in BN_SHAPES:
        label = f"{shape} axis={axis}"
        step, outputs = minigrad_bn(shape, axis)
        works = {"minigrad": step}
        if backend == "numpy":
            works["NumPy"], reference_outputs = numpy_bn(shape, axis)
            check_same(label, outputs(), reference_outputs(), "NumPy")
        if torch is not None:
            works["PyTorch"], reference_outputs = torch_bn(shape, axis, device)
            check_same(label, outputs(), reference_outputs(), "PyTorch")
        report(label, clock.medians(works, args.repeats), "ms", 1e3)

    print(f"\n2. one SGD step (momentum 0.9): MLP {'-'.join(map(str, MLP_SIZES))}, BatchNorm + ReLU, "
          f"batch {MLP_BATCH}")
    works = {"minigrad": minigrad_mlp()}
    if torch is not None:
        works["PyTorch"] = torch_mlp(device)
    report("training step", clock.medians(works, args.repeats), "ms", 1e3)

    print(f"\n3. engine overhead: {CHAIN_LENGTH}-op chain on a 4-element tensor, forward + backward, per op")
    ops = CHAIN_LENGTH + 1  # the chain and the final sum
    works = {"minigrad": minigrad_engine()}
    if backend == "numpy":
        works["NumPy"] = numpy_engine()
    if torch is not None:
        works["PyTorch"] = torch_engine(device)
    report("per op", {name: t / ops for name, t in clock.medians(works, args.repeats).items()}, "us", 1e6)

    print(f"\n4. memory over {args.memory_steps} training steps of (2), cyclic garbage collector off")
    memory = memory_profile(minigrad_mlp(), args.memory_steps, backend)
    print(f"  peak {memory['peak'] / 2**20:.1f} MiB, held after the last step {memory['held'] / 2**20:.1f} MiB")
    print(f"  growth {memory['growth_per_step']:+.0f} bytes per step with the collector off; "
          f"{memory['cycle_objects']} objects found in reference cycles; "
          f"growth {memory['growth_after_collect']:+.1f} bytes per step after a full collect")

    benchmark_conv.run(clock, args.repeats, torch, device if torch is not None else None, report,
                       lambda label, ours, theirs: check_same(label, ours, theirs, "PyTorch"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""minigrad's benchmarks, with references measured in the same run.

    python scripts/benchmark.py [--repeats N] [--threads N]

engine: a chain of 500 elementwise operations on a 4-element float32 tensor, forward plus
backward, reported per operation. References: the same chain in PyTorch (CPU build, same
thread count) when it is installed, and the same arithmetic on raw NumPy arrays with no
autograd at all (a lower bound for any NumPy-based engine). Times are medians over repeats
after a warm-up; ratios are minigrad / reference from this run, because absolute times on a
shared machine drift.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Callable

CHAIN_LENGTH = 500


def median_seconds(work: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median wall time of work() over `repeats` runs, after `warmup` untimed runs."""
    for _ in range(warmup):
        work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _chain(x, a, b):
    """The op chain: *, +, -, / with a tensor operand, cycled; values stay near x."""
    y = x
    for i in range(CHAIN_LENGTH // 4):
        y = y * a
        y = y + b
        y = y - b
        y = y / a
    return y


def minigrad_engine() -> Callable[[], object]:
    import numpy as np

    import minigrad as mg

    x = mg.Tensor(np.linspace(0.5, 1.5, 4, dtype=np.float32), requires_grad=True)
    a = mg.Tensor(np.full(4, 1.01, dtype=np.float32))
    b = mg.Tensor(np.full(4, 0.01, dtype=np.float32))

    def step():
        x.grad = None
        _chain(x, a, b).sum().backward()

    return step


def torch_engine() -> Callable[[], object] | None:
    try:
        import torch
    except ImportError:
        return None
    x = torch.linspace(0.5, 1.5, 4, dtype=torch.float32, requires_grad=True)
    a = torch.full((4,), 1.01)
    b = torch.full((4,), 0.01)

    def step():
        x.grad = None
        _chain(x, a, b).sum().backward()

    return step


def numpy_chain() -> Callable[[], object]:
    """Forward and a hand-written backward on raw arrays: what the arithmetic alone costs."""
    import numpy as np

    x = np.linspace(0.5, 1.5, 4, dtype=np.float32)
    a = np.full(4, 1.01, dtype=np.float32)
    b = np.full(4, 0.01, dtype=np.float32)

    def step():
        y = _chain(x, a, b)
        grad = np.ones_like(y)
        for i in range(CHAIN_LENGTH // 4):  # back through / a, - b, + b, * a
            grad = grad / a
            grad = grad * a
        return grad

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(args.threads))

    import numpy as np

    import minigrad as mg

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"python {platform.python_version()}, numpy {np.__version__}, "
          f"backend {mg.get_backend()}, threads {args.threads}")
    reference = torch_engine()
    if reference is not None:
        import torch

        torch.set_num_threads(args.threads)
        print(f"torch {torch.__version__}")

    ops = CHAIN_LENGTH + 1  # the chain and the final sum
    ours = median_seconds(minigrad_engine(), args.repeats) / ops
    raw = median_seconds(numpy_chain(), args.repeats) / ops
    print(f"\nengine overhead: {CHAIN_LENGTH}-op chain on a 4-element tensor, forward + backward, "
          f"median of {args.repeats}, per op")
    print(f"  minigrad          {ours * 1e6:7.2f} us")
    print(f"  raw NumPy         {raw * 1e6:7.2f} us   minigrad / NumPy   = {ours / raw:.2f}")
    if reference is not None:
        theirs = median_seconds(reference, args.repeats) / ops
        print(f"  PyTorch (CPU)     {theirs * 1e6:7.2f} us   minigrad / PyTorch = {ours / theirs:.2f}")
    else:
        print("  PyTorch           not installed: no ratio (pip install torch to compare)")


if __name__ == "__main__":
    main()

"""What synchronizing costs: minigrad.distributed under MPI, against the same work in one process.

    mpiexec -n 2 python scripts/benchmark_distributed.py [--repeats N] [--quick]
    python scripts/benchmark_distributed.py            (one process: the reference rows only)

Medians over `repeats` timings after a warm-up, each timing started together on every rank
(a barrier) and taken as the slowest rank's:

1. collectives: the all-gather of one BatchNorm layer's statistics (3 values per channel, 512
   channels) and the all-reduce of its backward sums (2 per channel).
2. one BatchNorm layer, forward + backward, training mode, float32, 256 rows per rank and 512
   features: synchronized=True against synchronized=False on the same rows.
3. average_gradients on the MLP's parameters (784-512-512-10): one message per dtype against
   one all-reduce per tensor.
4. one data-parallel SGD step of the benchmark MLP (784-512-512-10, BatchNorm + ReLU, global
   batch 256 split over the ranks, synchronized BatchNorm, average_gradients), against the
   single-process step on the whole batch, run on rank 0 alone while the others wait.

Every rank uses one BLAS thread. With more ranks than cores the ranks share cores, so the
step times then say more about the machine than about MPI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
import minigrad.distributed as dist  # noqa: E402
from minigrad.nn import functional as F  # noqa: E402

FEATURES, ROWS = 512, 256
MLP_SIZES, MLP_BATCH = (784, 512, 512, 10), 256


def median_seconds(work, repeats: int, warmup: int = 3) -> float:
    """The median over repeats of the slowest rank's time for work(), started together."""
    comm = dist.communicator()
    for _ in range(warmup):
        work()
    times = []
    for _ in range(repeats):
        if comm is not None:
            comm.Barrier()
        start = time.perf_counter()
        work()
        elapsed = time.perf_counter() - start
        times.append(elapsed if comm is None else comm.allreduce(elapsed, op=_max()))
    return statistics.median(times)


def _max():
    from mpi4py import MPI

    return MPI.MAX


def batch_norm_step(synchronized: bool):
    layer = mg.nn.BatchNorm(synchronized=synchronized)
    x = mg.Tensor(np.random.default_rng(dist.rank()).normal(size=(ROWS, FEATURES)).astype(np.float32),
                  requires_grad=True)
    layer(x, training=True)

    def step():
        x.grad = None
        layer(x, training=True).sum().backward()

    return step


def mlp(synchronized: bool):
    layers = []
    for units in MLP_SIZES[1:-1]:
        layers += [mg.nn.Dense(units), mg.nn.BatchNorm(synchronized=synchronized), mg.nn.ReLU()]
    mg.manual_seed(0)
    model = mg.nn.Sequential(*layers, mg.nn.Dense(MLP_SIZES[-1]))
    model.build((None, MLP_SIZES[0]))
    return model


def training_step(model, x, labels, data_parallel: bool):
    optimizer = mg.optim.SGD(model.parameters(), learning_rate=0.01, momentum=0.9)

    def step():
        optimizer.zero_grad()
        F.softmax_cross_entropy(model(x, training=True), labels).backward()
        if data_parallel:
            dist.average_gradients(model.parameters())
        optimizer.step()

    return step


def per_tensor_average(parameters):
    """average_gradients' alternative, for comparison: one all-reduce per tensor."""
    comm, size = dist.communicator(), dist.world_size()
    for p in parameters:
        local = p.grad.numpy()
        total = np.empty_like(local)
        comm.Allreduce(local, total)
        p.grad = mg.Tensor(total / size)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="3 repeats: a smoke test")
    arguments = parser.parse_args(argv)
    repeats = 3 if arguments.quick else arguments.repeats
    ranks = dist.init()
    lead = dist.rank() == 0
    say = print if lead else (lambda *a, **k: None)
    say(f"minigrad.distributed: {ranks} rank(s) on {os.cpu_count()} cores, one BLAS thread each; "
        f"medians of {repeats}, the slowest rank's time")

    if ranks > 1:
        say("\n1. collectives of one BatchNorm layer (512 channels)")
        stats, sums = np.ones((3, FEATURES)), np.ones((2, FEATURES))
        gather = median_seconds(lambda: dist.allgather(stats, "benchmark"), repeats * 10)
        reduce = median_seconds(lambda: dist.allreduce_sum(sums, "benchmark"), repeats * 10)
        say(f"  all-gather of count, sum, squared deviations  {gather * 1e6:8.1f} us")
        say(f"  all-reduce of the two backward sums           {reduce * 1e6:8.1f} us")

    say(f"\n2. BatchNorm forward + backward, ({ROWS}, {FEATURES}) per rank, float32")
    plain = median_seconds(batch_norm_step(False), repeats)
    say(f"  synchronized=False                            {plain * 1e3:8.2f} ms")
    if ranks > 1:
        synced = median_seconds(batch_norm_step(True), repeats)
        say(f"  synchronized=True                             {synced * 1e3:8.2f} ms   "
            f"synchronized / not = **{synced / plain:.2f}**")

    rng = np.random.default_rng(0)
    x_all = rng.random((MLP_BATCH, MLP_SIZES[0]), dtype=np.float32)
    labels_all = rng.integers(0, MLP_SIZES[-1], size=MLP_BATCH)
    if ranks > 1:
        say("\n3. average_gradients on the MLP's parameters")
        model = mlp(False)
        F.softmax_cross_entropy(model(mg.Tensor(x_all[:8]), training=True), labels_all[:8]).backward()
        parameters = model.parameters()
        saved = [p.grad for p in parameters]

        def restore():
            for p, g in zip(parameters, saved):
                p.grad = g

        one = median_seconds(lambda: (restore(), dist.average_gradients(parameters)), repeats)
        each = median_seconds(lambda: (restore(), per_tensor_average(parameters)), repeats)
        size = sum(p.data.size for p in parameters)
        say(f"  one message per dtype ({size:,} floats)       {one * 1e3:8.2f} ms")
        say(f"  one all-reduce per tensor ({len(parameters)} tensors)        {each * 1e3:8.2f} ms")

    say(f"\n4. one SGD step of the MLP, global batch {MLP_BATCH}")
    comm = dist.communicator()
    single = None
    if lead:  # the single-process reference, on the whole batch; the others wait at the barrier
        single = median_seconds_alone(training_step(mlp(False), mg.Tensor(x_all), labels_all, False), repeats)
        say(f"  one process, batch {MLP_BATCH}                         {single * 1e3:8.2f} ms   "
            f"{1 / single:6.1f} steps/s")
    if comm is not None:
        comm.Barrier()
        xs, ys = dist.shard(x_all, labels_all)
        parallel = median_seconds(training_step(mlp(True), mg.Tensor(xs), ys, True), repeats)
        say(f"  {ranks} ranks x {len(xs)} rows, synchronized BatchNorm   {parallel * 1e3:8.2f} ms   "
            f"{1 / parallel:6.1f} steps/s   data-parallel / one process = **{parallel / single:.2f}**"
            if lead else "")
    return 0


def median_seconds_alone(work, repeats: int, warmup: int = 3) -> float:
    """median_seconds without collectives (one rank alone)."""
    for _ in range(warmup):
        work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())

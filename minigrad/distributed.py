"""Data-parallel training on MPI (mpi4py): every rank trains a copy of the model on its part of
each batch, and the ranks agree on the weights, the gradients and BatchNorm's statistics.

    mpiexec -n 4 python train.py        # mpiexec and libmpi come from the `mpich` wheel

    import minigrad.distributed as dist
    dist.init()                                   # MPI.COMM_WORLD; a world of one without mpiexec
    dist.broadcast_parameters(model)              # every rank starts from rank 0's weights
    for x, y in batches:                          # the same global batches on every rank
        x, y = dist.shard(x, y)                   # this rank's rows of them
        loss = F.softmax_cross_entropy(model(x), y)
        loss.backward()
        dist.average_gradients(model.parameters())    # the gradient of the mean loss
        optimizer.step()

BatchNorm(synchronized=True) takes its statistics over every rank's rows once init() has run
on more than one process (minigrad.ops.batch_norm_sync). `import minigrad` never imports
mpi4py: only init() does, and without mpi4py, or outside mpiexec, the world has one rank.

Failures never hang the job: init() installs an excepthook that calls MPI_Abort, so an
uncaught exception on any rank ends every rank within seconds, and the collectives here check
that all ranks bring the same shapes before they exchange data, raising the same ValueError on
every rank otherwise. An excepthook does not see sys.exit(): a rank that exits early with a
non-zero status leaves the others waiting, unless the script is run as
`mpiexec -n 4 python -m mpi4py train.py`, whose runner aborts the job on that too.

CuPy arrays go through host memory: each is copied to NumPy, exchanged and copied back, since
minigrad does not assume a CUDA-aware MPI.
"""

from __future__ import annotations

import os
import sys
import traceback
import zlib
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from minigrad import backend

_comm: Any = None  # MPI.COMM_WORLD once init() found more than one rank; None: a world of one


def init() -> int:
    """Join MPI.COMM_WORLD (if mpi4py is installed and there is more than one process) and
    install the excepthook that aborts every rank when one fails. Returns world_size()."""
    global _comm
    try:
        from mpi4py import MPI
    except ImportError:
        return 1
    comm = MPI.COMM_WORLD
    if comm.Get_size() > 1:
        _comm = comm
        _install_abort_on_exception(comm)
    return world_size()


def _install_abort_on_exception(comm: Any) -> None:
    """An uncaught exception on this rank prints its traceback and then aborts the whole job:
    otherwise the other ranks wait in their next collective forever."""

    def abort(kind: type, value: BaseException, trace: Any) -> None:
        sys.stderr.write(f"[rank {comm.Get_rank()}] uncaught exception; aborting every rank\n")
        traceback.print_exception(kind, value, trace)
        sys.stderr.flush()
        comm.Abort(1)
        os._exit(1)  # Abort may return before the process is killed: never print twice, never linger

    sys.excepthook = abort


def rank() -> int:
    """This process's rank, 0 .. world_size() - 1 (0 in a world of one)."""
    return 0 if _comm is None else _comm.Get_rank()


def world_size() -> int:
    """How many processes train together (1 without init(), mpi4py or mpiexec)."""
    return 1 if _comm is None else _comm.Get_size()


def communicator() -> Any:
    """The MPI communicator, or None in a world of one."""
    return _comm


# ---- exchanging arrays -----------------------------------------------------------------------

def check_same_shape(shape: tuple[int, ...], what: str) -> None:
    """Raise the same ValueError on every rank unless every rank passes the same shape.

    One tiny all-reduce tells: the largest of each rank's (rank count, sizes) and of their
    negatives, which agree only if every rank has the same. Only on a mismatch (or a shape of
    more than 8 axes) are the shapes themselves gathered.
    """
    if _comm is None:
        return
    from mpi4py import MPI

    key = np.full(9, -1, np.int64)
    key[0] = len(shape)
    key[1:1 + min(8, len(shape))] = shape[:8]
    extreme = np.empty(18, np.int64)
    _comm.Allreduce(np.concatenate([key, -key]), extreme, op=MPI.MAX)
    if (extreme[:9] == -extreme[9:]).all() and len(shape) <= 8:
        return
    shapes = _comm.allgather(tuple(int(n) for n in shape))
    if len(set(shapes)) > 1:
        raise ValueError(
            f"{what}: the ranks disagree on the shape: "
            + ", ".join(f"rank {r} has {s}" for r, s in enumerate(shapes))
            + "; every rank must run the same model on the same kind of batch"
        )


def layout_key(layout: Any) -> int:
    """A number that stands for a layout (e.g. the shapes and dtypes of a list of tensors),
    equal on two ranks only if their layouts are (up to a CRC-32 collision)."""
    return zlib.crc32(repr(layout).encode())


def allgather(array: Any, what: str, extra: tuple[int, ...] = ()) -> np.ndarray:
    """Every rank's `array` (same shape on all, checked), stacked on a new first axis, as a
    float64 NumPy array; a world of one gives array[None]. `extra` joins the shape in the
    check: numbers every rank must agree on too."""
    local = np.ascontiguousarray(backend.to_numpy(array), dtype=np.float64)
    if _comm is None:
        return local[None]
    check_same_shape(local.shape + tuple(extra), what)
    gathered = np.empty((_comm.Get_size(),) + local.shape, np.float64)
    _comm.Allgather(local, gathered)
    return gathered


def allreduce_sum(array: Any, what: str) -> np.ndarray:
    """The sum over the ranks of `array` (same shape on all, checked), as float64 NumPy."""
    local = np.ascontiguousarray(backend.to_numpy(array), dtype=np.float64)
    if _comm is None:
        return local
    check_same_shape(local.shape, what)
    total = np.empty_like(local)
    _comm.Allreduce(local, total)
    return total


# ---- the model -----------------------------------------------------------------------------

def broadcast_parameters(module: Any, root: int = 0) -> None:
    """Copy every weight and every piece of state of `module` (moving statistics and batch
    counts included) from rank `root` to all ranks, in place. The model must be built.

    The ranks first compare the names, shapes and dtypes: a mismatch is the same ValueError
    on every rank, before anything is written.
    """
    if _comm is None:
        return
    from mpi4py import MPI

    # The layouts are compared before anything else, an unbuilt model (no weights) included,
    # so that every rank raises or none does.
    layout = [(name, tuple(w.shape), w.dtype.str) for name, w in module.named_weights()]
    roots = _comm.bcast(layout, root=root)
    everyone = np.empty(2, np.int64)
    _comm.Allreduce(np.array([1 if roots == layout else 0, 1 if layout else 0], np.int64), everyone, op=MPI.MIN)
    differing = [r for r, same in enumerate(_comm.allgather(roots == layout)) if not same]
    if not everyone[1]:
        raise ValueError("broadcast_parameters: a rank's module has no weights yet; build it on every rank first")
    if not everyone[0]:
        raise ValueError(
            f"broadcast_parameters: the models of rank(s) {differing} differ from rank {root}'s (names, "
            f"shapes or dtypes of their weights); every rank must build the same model"
        )
    for _, weight in module.named_weights():
        host = np.ascontiguousarray(backend.to_numpy(weight.data))
        _comm.Bcast(host, root=root)
        weight.data[...] = backend.to_backend(host, weight.backend)


def average_gradients(parameters: Sequence[Any]) -> None:
    """Replace each parameter's .grad by its mean over the ranks, in place: after backward()
    on each rank's own loss, every rank then holds the gradient of the mean of the losses
    (the whole batch's mean loss when every rank holds as many rows: make the batch size a
    multiple of world_size()). The ranks' parameters must agree in number, shapes and dtypes
    (checked: the same ValueError on every rank otherwise).

    All the gradients travel in one message per dtype (flattened into one buffer), not one per
    tensor. A parameter without a gradient counts as zeros. In a world of one, nothing changes.
    """
    if _comm is None:
        return
    parameters = list(parameters)
    layout = [(tuple(p.data.shape), p.data.dtype.str) for p in parameters]
    check_same_shape((len(parameters), layout_key(layout)), "average_gradients (the parameters' shapes and dtypes)")
    by_dtype: dict[np.dtype, list[Any]] = {}
    for p in parameters:
        by_dtype.setdefault(p.data.dtype, []).append(p)
    size = _comm.Get_size()
    for dtype, group in by_dtype.items():
        flat = np.concatenate([
            np.zeros(p.data.size, dtype) if p.grad is None else backend.to_numpy(p.grad.data).ravel()
            for p in group])
        total = np.empty_like(flat)
        _comm.Allreduce(flat, total)
        total /= size
        start = 0
        for p in group:
            part = backend.to_backend(total[start:start + p.data.size].reshape(p.data.shape), p.backend)
            start += p.data.size
            if p.grad is None:
                p.grad = type(p)._make(part.copy())
            else:
                p.grad.data[...] = part  # in place: whoever holds this .grad sees the mean


# ---- the data ------------------------------------------------------------------------------

def rank_rows(n: int) -> slice:
    """This rank's rows of a batch of n: contiguous, as numpy.array_split cuts them (ranks
    before the remainder get one more), so the parts are disjoint and cover all n."""
    size, me = world_size(), rank()
    base, extra = divmod(n, size)
    start = me * base + min(me, extra)
    return slice(start, start + base + (1 if me < extra else 0))


def shard(*arrays: Any) -> Any:
    """This rank's rows of each array (all of the same length): see rank_rows. One array in,
    one out; several in, a tuple out."""
    if not arrays:
        raise ValueError("shard: give at least one array")
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"shard: the arrays must have the same length, got {sorted(lengths)}")
    rows = rank_rows(lengths.pop())
    parts = tuple(a[rows] for a in arrays)
    return parts[0] if len(parts) == 1 else parts


def shard_batches(batches: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """This rank's part of each batch of an iterator (e.g. mg.data.Batches seeded alike on
    every rank): over an epoch the ranks see disjoint rows and together each row the iterator
    yields exactly once (Batches drops an incomplete last batch by default)."""
    for batch in batches:
        yield shard(*batch)

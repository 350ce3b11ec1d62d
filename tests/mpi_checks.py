"""Checks that run under mpiexec, one per command-line name; tests/test_distributed.py launches them.

    mpiexec -n 4 python tests/mpi_checks.py batchnorm 15,15,15,15

Every rank compares what it computed with a single-process reference that it computes itself
on the whole batch, and exits non-zero (through the excepthook's MPI_Abort) if anything
differs. On success each rank prints "rank R ok: <check>".
"""

import sys

import numpy as np

import minigrad as mg
import minigrad.distributed as dist
from minigrad.nn import functional as F

FLOAT32 = dict(rtol=2e-5, atol=2e-5)


def batchnorm(split: str) -> None:
    """4 ranks x their rows against one process on all of them: output, dl/dx, the parameter
    gradients after average_gradients, and the moving statistics; unsynchronized differs."""
    sizes = [int(n) for n in split.split(",")]
    assert len(sizes) == dist.world_size(), (sizes, dist.world_size())
    total, me = sum(sizes), dist.rank()
    start = sum(sizes[:me])
    rows = slice(start, start + sizes[me])
    for shape, axis in (((total, 5), -1), ((total, 3, 4, 2), 1)):
        rng = np.random.default_rng(0)
        x = (rng.normal(size=shape) * 3 + 1).astype(np.float32)
        g = rng.normal(size=shape).astype(np.float32)
        features = shape[axis]
        gamma, beta = rng.uniform(0.5, 1.5, features), rng.normal(size=features)

        def layer(synchronized):
            bn = mg.nn.BatchNorm(axis=axis, momentum=0.7, synchronized=synchronized)
            bn.build((None,) + shape[1:])
            bn.gamma.data[...], bn.beta.data[...] = gamma, beta
            return bn

        def run(bn, values, upstream):
            inputs = mg.Tensor(values, requires_grad=True)
            y = bn(inputs, training=True)
            (y * mg.Tensor(upstream)).sum().backward()
            return y.numpy(), inputs.grad.numpy()

        single = layer(False)
        y_full, dx_full = run(single, x, g)
        ours = layer(True)
        y, dx = run(ours, x[rows], g[rows])
        np.testing.assert_allclose(y, y_full[rows], **FLOAT32, err_msg="output")
        np.testing.assert_allclose(dx, dx_full[rows], **FLOAT32, err_msg="dl/dx")
        dist.average_gradients(ours.parameters())
        for name in ("gamma", "beta"):  # the mean loss's gradient: the single one over the ranks
            np.testing.assert_allclose(getattr(ours, name).grad.numpy(),
                                       getattr(single, name).grad.numpy() / dist.world_size(),
                                       **FLOAT32, err_msg=f"{name} gradient")
        for name in ("moving_mean", "moving_variance"):
            np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(single, name).numpy(),
                                       **FLOAT32, err_msg=name)
            everyone = dist.allgather(getattr(ours, name).numpy(), name)
            assert (everyone == everyone[0]).all(), f"{name} differs between ranks"
        if sizes[me] > 1:
            unsynchronized, _ = run(layer(False), x[rows], g[rows])
            assert np.abs(unsynchronized - y_full[rows]).max() > 1e-2, "per-rank statistics should differ"
    print(f"rank {me} ok: batchnorm {split}", flush=True)


def renorm() -> None:
    """Batch Renormalization with synchronized statistics equals one process on the whole batch:
    output, dl/dx and all seven weights."""
    x = (np.random.default_rng(2).normal(size=(24, 4)) * 2 + 1).astype(np.float32)
    g = np.random.default_rng(3).normal(size=(24, 4)).astype(np.float32)
    rows = dist.rank_rows(24)
    outputs = []
    for synchronized, values, upstream in ((False, x, g), (True, x[rows], g[rows])):
        layer = mg.nn.BatchNorm(renorm=True, renorm_clipping={"rmax": 1.5, "dmax": 0.5}, momentum=0.8,
                                renorm_momentum=0.6, synchronized=synchronized)
        layer.build((None, 4))
        layer.renorm_mean.data[...], layer.renorm_stddev.data[...] = 0.5, 1.5
        inputs = mg.Tensor(values, requires_grad=True)
        for _ in range(3):
            inputs.grad = None
            y = layer(inputs, training=True)
            (y * mg.Tensor(upstream)).sum().backward()
        outputs.append((y.numpy(), inputs.grad.numpy(), layer))
    (y_full, dx_full, single), (y, dx, ours) = outputs
    np.testing.assert_allclose(y, y_full[rows], **FLOAT32, err_msg="output")
    np.testing.assert_allclose(dx, dx_full[rows], **FLOAT32, err_msg="dl/dx")
    for name in single.STATISTICS[:-1]:
        np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(single, name).numpy(), **FLOAT32,
                                   err_msg=name)
    print(f"rank {dist.rank()} ok: renorm", flush=True)


def unbiased() -> None:
    """unbiased=True feeds the moving variance m/(m-1) with the global m."""
    x = np.random.default_rng(1).normal(size=(12, 3)).astype(np.float64)
    rows = dist.rank_rows(12)
    ours = mg.nn.BatchNorm(momentum=0.0, unbiased=True, synchronized=True, dtype="float64")
    ours(mg.Tensor(x[rows]), training=True)
    np.testing.assert_allclose(ours.moving_variance.numpy(), x.var(axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(ours.moving_mean.numpy(), x.mean(axis=0), rtol=1e-12)
    print(f"rank {dist.rank()} ok: unbiased", flush=True)


def training() -> None:
    """50 SGD steps on 2 ranks with synchronized BatchNorm equal one process on the whole
    batches, step by step: the loss and every weight."""
    data = mg.data.load_digits(seed=0)

    def model(synchronized):
        mg.manual_seed(3)
        net = mg.nn.Sequential(mg.nn.Dense(32, use_bias=False),
                               mg.nn.BatchNorm(momentum=0.9, synchronized=synchronized),
                               mg.nn.ReLU(), mg.nn.Dense(10))
        net.build((None, 64))
        return net

    single, ours = model(False), model(True)
    dist.broadcast_parameters(ours)
    optimizers = [mg.optim.SGD(m.parameters(), learning_rate=0.2, momentum=0.9) for m in (single, ours)]
    batches = mg.data.Batches(data[0], data[1], 60, seed=0)
    step = 0
    while step < 50:
        for x, y in batches:
            losses = []
            for net, optimizer, (xs, ys) in zip((single, ours), optimizers, ((x, y), dist.shard(x, y))):
                optimizer.zero_grad()
                loss = F.softmax_cross_entropy(net(xs, training=True), ys)
                loss.backward()
                if net is ours:
                    dist.average_gradients(net.parameters())
                optimizer.step()
                losses.append(loss.item())
            mean_loss = dist.allreduce_sum(np.array([losses[1]]), "loss")[0] / dist.world_size()
            assert abs(mean_loss - losses[0]) < 1e-4, (step, mean_loss, losses[0])
            for (name, a), (_, b) in zip(single.named_weights(), ours.named_weights()):
                np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5,
                                           err_msg=f"{name} at step {step}")
            step += 1
            if step == 50:
                break
    print(f"rank {dist.rank()} ok: training", flush=True)


def broadcast() -> None:
    """broadcast_parameters copies weights and moving statistics from rank 0 to every rank."""
    mg.manual_seed(dist.rank())  # different starting weights on each rank
    net = mg.nn.Sequential(mg.nn.Dense(4), mg.nn.BatchNorm(momentum=0.5), mg.nn.Dense(2))
    net(mg.Tensor(np.random.default_rng(dist.rank()).normal(size=(8, 3)).astype(np.float32)), training=True)
    dist.broadcast_parameters(net)
    for name, weight in net.named_weights():
        everyone = dist.allgather(weight.numpy().astype(np.float64), name)
        assert (everyone == everyone[0]).all(), f"{name} differs between ranks after the broadcast"
    print(f"rank {dist.rank()} ok: broadcast", flush=True)


def mismatch() -> None:
    """Shapes that differ between ranks raise the same clear ValueError on every rank."""
    me = dist.rank()
    cases = []
    grad = mg.Tensor(np.ones(3 + me, np.float32), requires_grad=True)
    grad.grad = mg.Tensor(np.ones(3 + me, np.float32))
    cases.append(("average_gradients", lambda: dist.average_gradients([grad])))
    bn = mg.nn.BatchNorm(synchronized=True)
    cases.append(("BatchNorm(synchronized=True)",
                  lambda: bn(mg.Tensor(np.ones((4, 2 + me), np.float32)), training=True)))
    net = mg.nn.Dense(2 + me)
    net.build((None, 3))
    cases.append(("broadcast_parameters", lambda: dist.broadcast_parameters(net)))
    # The same number of values, arranged differently, or in another dtype.
    reshaped = mg.Tensor(np.ones((2, 3) if me == 0 else (3, 2), np.float32), requires_grad=True)
    reshaped.grad = mg.Tensor(np.ones(reshaped.shape, np.float32))
    cases.append(("average_gradients", lambda: dist.average_gradients([reshaped])))
    retyped = mg.Tensor(np.ones(4, np.float32 if me == 0 else np.float64), requires_grad=True)
    retyped.grad = mg.Tensor(np.ones(4, retyped.dtype))
    cases.append(("average_gradients", lambda: dist.average_gradients([retyped])))
    unbuilt = mg.nn.Dense(2)  # built on rank 0 only
    if me == 0:
        unbuilt.build((None, 3))
    cases.append(("broadcast_parameters", lambda: dist.broadcast_parameters(unbuilt)))
    masked_here = mg.nn.BatchNorm(synchronized=True)  # a mask on rank 0 only
    x = mg.Tensor(np.ones((4, 3, 2), np.float32))
    cases.append(("BatchNorm(synchronized=True)",
                  lambda: masked_here(x, training=True, mask=np.ones((4, 3), bool) if me == 0 else None)))
    empty = mg.nn.BatchNorm(synchronized=True)  # no rows on any rank
    cases.append(("BatchNorm(synchronized=True)", lambda: empty(mg.Tensor(np.ones((0, 3), np.float32)), training=True)))
    for what, call in cases:
        try:
            call()
        except ValueError as error:
            assert what in str(error), str(error)
        else:
            raise AssertionError(f"{what}: a mismatch was not refused")
    print(f"rank {me} ok: mismatch", flush=True)


def shard() -> None:
    """rank_rows and shard_batches: disjoint rows on each rank, every row once per epoch."""
    for n in (0, 1, 7, 60):
        seen = dist.allgather(np.bincount(np.arange(n)[dist.rank_rows(n)], minlength=max(n, 1)), "rows")
        assert (seen.sum(axis=0)[:n] == 1).all(), f"rows of a batch of {n} not split exactly once"
    x, y = np.arange(100.0).reshape(50, 2), np.arange(50)
    mine = np.concatenate([ys for _, ys in dist.shard_batches(mg.data.Batches(x, y, 8, seed=4))])
    counts = dist.allreduce_sum(np.bincount(mine, minlength=50), "epoch")
    expected = np.bincount(np.concatenate([ys for _, ys in mg.data.Batches(x, y, 8, seed=4)]), minlength=50)
    assert (counts == expected).all(), "the ranks together should see each batch's rows exactly once"
    print(f"rank {dist.rank()} ok: shard", flush=True)


def in_place() -> None:
    """average_gradients writes into the .grad a caller holds; inference without moving
    statistics does not synchronize (rank 0 alone may evaluate), as in PyTorch."""
    weight = mg.Tensor(np.zeros(3), requires_grad=True)
    weight.grad = mg.Tensor(np.full(3, float(dist.rank())))
    held = weight.grad
    dist.average_gradients([weight])
    assert weight.grad is held and (held.numpy() == (dist.world_size() - 1) / 2).all(), held.numpy()
    layer = mg.nn.BatchNorm(synchronized=True, track_running_stats=False)
    x = np.random.default_rng(dist.rank()).normal(size=(6, 3)).astype(np.float32)
    layer(mg.Tensor(x), training=True)
    if dist.rank() == 0:  # the others do not call: a collective here would hang
        y = layer(mg.Tensor(x), training=False).numpy()
        np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), **FLOAT32)
    dist.communicator().Barrier()
    print(f"rank {dist.rank()} ok: in_place", flush=True)


def refusals() -> None:
    """A mask with statistics across processes is refused clearly, on every rank, state intact."""
    layer = mg.nn.BatchNorm(synchronized=True)
    x = mg.Tensor(np.random.default_rng(dist.rank()).normal(size=(3, 4, 2)).astype(np.float32))
    layer(x, training=True)
    before = layer.state_dict()
    try:
        layer(x, training=True, mask=np.ones((3, 4), bool))
    except ValueError as error:
        assert "a mask cannot be combined with statistics across processes" in str(error), str(error)
    else:
        raise AssertionError("a mask with synchronized statistics was not refused")
    for name, value in layer.state_dict().items():
        assert (value == before[name]).all(), f"{name} changed"
    print(f"rank {dist.rank()} ok: refusals", flush=True)


def crash() -> None:
    """Rank 1 raises; rank 0 waits in a collective. The excepthook must end the whole job."""
    if dist.rank() == 1:
        raise RuntimeError("rank 1 fails on purpose")
    dist.communicator().Barrier()  # never returns: rank 1 never gets here
    print("rank 0 passed a barrier that rank 1 never reached", flush=True)


def create_graph() -> None:
    """Synchronized BatchNorm across processes refuses create_graph=True with a clear error."""
    x = mg.Tensor(np.random.default_rng(dist.rank()).normal(size=(4, 2)), requires_grad=True)
    y = mg.nn.BatchNorm(synchronized=True, dtype="float64")(x, training=True)
    try:
        mg.grad((y * y).sum(), [x], create_graph=True)
    except RuntimeError as error:
        assert "first derivatives only" in str(error), str(error)
    else:
        raise AssertionError("create_graph=True was not refused")
    print(f"rank {dist.rank()} ok: create_graph", flush=True)


if __name__ == "__main__":
    assert dist.init() > 1, "run under mpiexec with more than one process"
    name, *arguments = sys.argv[1:]
    globals()[name](*arguments)

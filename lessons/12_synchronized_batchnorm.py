# %% [markdown]
# # Lesson 12: synchronized BatchNorm, or whose batch is it?
#
# Data parallelism trains one network on several processes, the ranks of an MPI job. Every
# rank holds a copy of the weights and takes its share of each global batch. Each rank computes
# the gradient of its own rows' mean loss, the ranks average their gradients (one all-reduce),
# and all take the same SGD step. For a loss that is a mean over images, this is exactly one
# process training on the whole batch: the mean of the ranks' mean losses is the batch's mean
# loss.
#
# BatchNorm is the layer for which this is not true. Its output for one image depends on every
# image of the batch, through mu_B and sigma_B^2 (Eq. 1 to 3a). So: whose batch is it?
#
#   - **Per-rank BatchNorm** (`synchronized=False`, what data parallelism does unless told
#     otherwise) normalizes each rank's rows by their own statistics. With 4 ranks of 2 rows,
#     the global batch is 8, but every BatchNorm layer sees batches of 2. That is lesson 11's
#     batch 2, where two normalized values are always about -1 and +1, even though the
#     gradients are averaged over all 8 images.
#   - **Synchronized BatchNorm** (`synchronized=True`, PyTorch's SyncBatchNorm) has each rank
#     send its count, sum and squared deviations for each channel. Every rank combines them
#     (`combine_moments`, in float64) into the mean and variance of all 8 rows. In the backward
#     pass the two sums per channel that the gradient needs, sum(g) and sum(g * (x - mu)), are
#     added over the ranks too. So dl/dx is the gradient of the sum of every rank's loss, and
#     `dist.average_gradients` turns it into the gradient of the mean loss. The 4 ranks then
#     compute what one process computes on the 8 rows, to rounding.
#     (`minigrad/ops/batch_norm_sync.py`.)
#
# This lesson trains lesson 11's network on the digits: the paper's 3x100 ReLU MLP, BatchNorm
# with momentum 0.9, plain SGD at lr 0.1, 1,500 steps. It trains on 4 ranks of 2 rows each, both
# ways, and compares both with one process training on the same batches of 8 from the same
# seeds. The training loop is written out below, and it is all there is to data parallelism.
# The runs use float64, so that rounding stays rounding over 1,500 steps. The last section
# shows what happens in float32.
#
# Run it under MPI, from the repository root. mpiexec comes with the mpich wheel
# (`pip install -e ".[distributed]"`):
#
#     mpiexec -n 4 python lessons/12_synchronized_batchnorm.py     (about 45 s on 2 cores; --quick: about 8 s)
#
# On this project's 2-core machine the 4 ranks oversubscribe the cores: two processes share
# each core, and every collective waits for the last rank to arrive. The times the lesson
# prints measure that, not the speed of data parallelism. Without mpiexec (a world of one) the
# lesson only says what it shows and how to launch it. Only rank 0 prints. It also writes the
# plot to runs/ and a CSV run log per run to runs/lesson12/.

# %%
import importlib.util
import math
import time

import numpy as np

import minigrad as mg
import minigrad.distributed as dist
from minigrad import lesson
from minigrad.nn import functional as F
from minigrad.runlog import RunLog
from minigrad.training import paper_mlp

options = lesson.options(
    "Lesson 12: synchronized BatchNorm, or whose batch is it? (run under mpiexec -n 4)",
    lambda parser: parser.add_argument("--seeds", default=None,
                                       help="comma-separated seeds (default 0,1,2; --quick: 0)"))
QUICK = options.quick
RANKS, ROWS_PER_RANK = 4, 2
GLOBAL_BATCH = RANKS * ROWS_PER_RANK  # 8
LAUNCH = "mpiexec -n 4 python lessons/12_synchronized_batchnorm.py"

WORLD = dist.init()  # MPI.COMM_WORLD under mpiexec; 1 without it (or without mpi4py)
RANK = dist.rank()
DISTRIBUTED = WORLD > 1
LEADER = RANK == 0


def report(*values, **keywords):
    """print, on rank 0 only: the other ranks hold the same results and stay quiet."""
    if LEADER:
        print(*values, **keywords, flush=True)


if not DISTRIBUTED:
    print("Lesson 12 needs several processes, so here it only says what it shows. Whose batch does "
          "BatchNorm normalize over when 4 MPI ranks train one network on 2 rows each of every batch "
          "of 8? Per-rank BatchNorm normalizes each rank's 2 rows by their own statistics. Its training "
          "loss stays near chance, as at lesson 11's batch 2, and it ends about 30 points below (about "
          "64% test accuracy). Synchronized BatchNorm (synchronized=True) takes the statistics over all "
          "8 rows. It then matches one process training on the same batches of 8, to rounding: the same "
          "losses, weights, moving statistics and test accuracy (about 96%, lesson 11's batch 8).")
    print(f"\nLaunch it from the repository root:\n\n    {LAUNCH}\n\n(add --quick for a short run). "
          "mpiexec comes with the mpich wheel: pip install -e \".[distributed]\".")
    if importlib.util.find_spec("mpi4py") is None:
        print("mpi4py is not installed here, so that is the first step.")
else:
    lesson.one_blas_thread()  # 4 ranks on 2 cores: one BLAS thread each, or they crowd each other out
if DISTRIBUTED and WORLD != RANKS:
    # Every rank raises, and init()'s excepthook ends the job: no rank is left waiting.
    raise ValueError(f"lesson 12 splits each batch of {GLOBAL_BATCH} over {RANKS} ranks, {ROWS_PER_RANK} rows "
                     f"each; it was started on {WORLD}. Run: {LAUNCH}")

# %% [markdown]
# ## The settings, and one batch three ways
# Everything below runs only under mpiexec. Every rank loads the same digits and draws the same
# batches from the same seed. `dist.shard` then gives each rank its 2 rows: rank 0 rows 0-1,
# rank 1 rows 2-3, and so on.
#
# Before any training, take one batch of 8 and the first BatchNorm layer's input for it, at the
# initial weights, in float32. Normalize it three ways. Per rank (`synchronized=False`) and
# synchronized (`synchronized=True`), each rank passes its 2 rows. As one process, all 8 rows
# go through a plain BatchNorm. Then we gather the ranks' outputs and compare. A random upstream
# gradient g gives the gradient test: the one-process dl/dx of sum(y * g) over all 8 rows
# should equal the synchronized ranks' dl/dx of their own sums.

# %%
STEPS = 300 if QUICK else 1500
EVAL_EVERY = 50 if QUICK else 100
if options.seeds:
    SEEDS = [int(seed) for seed in options.seeds.split(",")]
else:
    SEEDS = [0] if QUICK else [0, 1, 2]
LEARNING_RATE = 0.1
BN_MOMENTUM = 0.9  # lesson 7's and lesson 11's
DTYPE = "float64"  # for the training runs; the last section repeats seed SEEDS[0] in float32
MODES = ("per-rank", "synchronized", "one process")
NAMES = {"per-rank": f"per-rank BatchNorm, {RANKS} ranks x {ROWS_PER_RANK} rows",
         "synchronized": f"synchronized BatchNorm, {RANKS} ranks x {ROWS_PER_RANK} rows",
         "one process": f"one process, batch {GLOBAL_BATCH}"}
COLOURS = {"per-rank": "tab:red", "synchronized": "tab:blue", "one process": "black"}

if DISTRIBUTED:
    x_train, y_train, x_test, y_test = mg.data.load_digits(seed=0)  # float32 images
    images = {dtype: (x_train.astype(dtype), x_test.astype(dtype)) for dtype in ("float32", "float64")}
    probe = slice(0, len(x_test))  # as fit(): training accuracy on a slice as large as the test set
    report(f"{WORLD} ranks, {ROWS_PER_RANK} rows each of every batch of {GLOBAL_BATCH}; {STEPS} SGD steps per run "
           f"at lr {LEARNING_RATE}, seeds {SEEDS}; digits: {len(x_train)} training and {len(x_test)} test "
           "images")


def gather_rows(tensor):
    """Every rank's rows of `tensor`, in rank order: the whole batch, on every rank."""
    parts = dist.allgather(tensor.numpy(), "rows")  # (ranks, rows, ...)
    return parts.reshape((-1,) + parts.shape[2:])


def one_batch_three_ways(seed=0):
    """The first BatchNorm layer, at the initial weights, on the first batch of seed `seed`."""
    model = paper_mlp("relu", batch_norm=True, bn_momentum=BN_MOMENTUM)
    mg.manual_seed(seed)
    model.build((None, x_train.shape[1]))
    x, _ = next(iter(mg.data.Batches(x_train, y_train, GLOBAL_BATCH, seed=seed)))
    with mg.no_grad():
        h = model[0](mg.Tensor(x)).numpy()  # the first Dense: BatchNorm's input, all 8 rows
    g = np.random.default_rng(seed).normal(size=h.shape).astype(np.float32)  # an upstream gradient
    mine = dist.rank_rows(len(h))
    outputs = {}
    for mode in MODES:
        layer = mg.nn.BatchNorm(momentum=BN_MOMENTUM, synchronized=mode == "synchronized")
        rows = slice(None) if mode == "one process" else mine
        inputs = mg.Tensor(h[rows], requires_grad=True)
        y = layer(inputs, training=True)
        (y * mg.Tensor(g[rows])).sum().backward()
        if mode == "one process":  # every rank computes it, on all 8 rows, without collectives
            outputs[mode] = y.numpy(), inputs.grad.numpy()
        else:
            outputs[mode] = gather_rows(y), gather_rows(inputs.grad)
    return h, outputs


if DISTRIBUTED:
    h, outputs = one_batch_three_ways()
    pair_means = h[:, 0].reshape(RANKS, ROWS_PER_RANK).mean(axis=1)
    y_one, dx_one = outputs["one process"]
    differences = {mode: (np.abs(outputs[mode][0] - y_one).max(), np.abs(outputs[mode][1] - dx_one).max())
                   for mode in ("per-rank", "synchronized")}
    per_rank_hat = outputs["per-rank"][0].reshape(RANKS, ROWS_PER_RANK, -1)  # gamma 1, beta 0: y is x_hat
    opposite = np.abs(per_rank_hat.sum(axis=1)).max()  # each pair's two values: x_hat and -x_hat
    report(f"\nThe first BatchNorm layer's unit 0 on the first batch: the batch of {GLOBAL_BATCH} has mean "
           f"{h[:, 0].mean():+.3f}; the {RANKS} ranks' pairs have means "
           + ", ".join(f"{m:+.3f}" for m in pair_means) + ".")
    report("| BatchNorm | max abs difference from one process: output | dl/dx |")
    report("|---|---|---|")
    for mode, (dy, ddx) in differences.items():
        report(f"| {NAMES[mode]} | {dy:.2g} | {ddx:.2g} |")
    report(f"Per rank, the two normalized values of every pair are each other's negatives (the largest "
           f"|x_hat_1 + x_hat_2| is {opposite:.1g}): a sign, times (a - b) / sqrt((a - b)^2 + 4 eps), which eps "
           f"keeps below 1 while the spreads are small (median |x_hat| {np.median(np.abs(per_rank_hat)):.2f} "
           "here, 1.00 later in training: lesson 11). Synchronized, the ranks' outputs and input gradients are "
           "one process's, to float32 rounding.")
    if LEADER:
        assert differences["synchronized"][0] <= 1e-5 and differences["synchronized"][1] <= 1e-4, differences
        assert differences["per-rank"][0] >= 0.1 and differences["per-rank"][1] >= 0.1, differences
        assert opposite <= 1e-5, "two values normalized by their own statistics are x_hat and -x_hat"

# %% [markdown]
# ## The training loop
# Here is the loop data parallelism runs on every rank. The batches are the same on every rank
# (mg.data.Batches with the same seed), `dist.shard` takes this rank's 2 rows, and
# `dist.average_gradients` makes every rank's gradient the mean loss's. Without the two `dist`
# lines and with the whole batch, it is the one-process loop, the steps `fit()` takes in lesson
# 11. Per-rank and synchronized BatchNorm run the same loop. Only the layer's `synchronized`
# switch differs.
#
# Inside this MPI job a `synchronized=True` layer always takes its statistics over the ranks.
# So the one-process reference uses `synchronized=False`, which in a world of one computes
# exactly the same thing, bit for bit. The reference runs need no communication, so they run
# side by side, one per rank.
#
# Every rank evaluates its own copy in inference mode on the whole test set (359 images, one
# forward pass) every 100 steps. That needs no collectives. Under per-rank BatchNorm the ranks'
# copies are not the same network: each rank's moving statistics come from its own pairs. The
# results quote rank 0's, the copy a checkpoint would save.


# %%
def snapshot(model):
    """Every floating-point weight, moving statistics included, flattened, in float64."""
    return np.concatenate([w.numpy().ravel() for _, w in model.named_weights() if w.dtype.kind == "f"]
                          ).astype(np.float64)


def empty_record():
    """What a run records, as arrays of fixed shapes (NaN until filled), so ranks can exchange them."""
    layout = paper_mlp("relu", batch_norm=True)
    layout.build((None, x_train.shape[1]))
    evaluations = STEPS // EVAL_EVERY + 1
    return {"loss": np.full(STEPS, np.nan),  # this process's loss at each step
            "test accuracy": np.full(evaluations, np.nan), "train accuracy": np.full(evaluations, np.nan),
            "state": np.full((evaluations, len(snapshot(layout))), np.nan),  # snapshot() at each evaluation
            "logits": np.full((len(x_test), 10), np.nan),  # the test set's, in inference mode, at the end
            "seconds": np.full(1, np.nan)}


def evaluate(model, record, index, dtype):
    """Inference mode (moving statistics), on the whole test set and on the training probe."""
    train_images, test_images = images[dtype]
    with mg.no_grad():
        logits = model(mg.Tensor(test_images), training=False).numpy()
        train_logits = model(mg.Tensor(train_images[probe]), training=False).numpy()
    record["test accuracy"][index] = (logits.argmax(axis=1) == y_test).mean()
    record["train accuracy"][index] = (train_logits.argmax(axis=1) == y_train[probe]).mean()
    record["state"][index] = snapshot(model)
    record["logits"][...] = logits


def train(mode, seed, dtype=DTYPE, reverse_rows=False):
    """One run of `mode` (see MODES) from `seed`; returns this process's record. reverse_rows
    feeds each batch's rows in reverse order: the same training, rounded differently."""
    distributed = mode != "one process"
    model = paper_mlp("relu", batch_norm=True, bn_momentum=BN_MOMENTUM,
                      bn_options=dict(synchronized=mode == "synchronized"), dtype=dtype)
    mg.manual_seed(seed)  # the initial weights: the same on every rank, and as fit() draws them
    model.build((None, x_train.shape[1]))
    if distributed:
        dist.broadcast_parameters(model)  # what guarantees the same start on every rank
    optimizer = mg.optim.SGD(model.parameters(), learning_rate=LEARNING_RATE)
    batches = mg.data.Batches(images[dtype][0], y_train, GLOBAL_BATCH, seed=seed)  # the same on every rank
    record = empty_record()
    evaluate(model, record, 0, dtype)
    started = time.perf_counter()
    step = 0
    while step < STEPS:
        for x, y in batches:
            if reverse_rows:
                x, y = x[::-1].copy(), y[::-1].copy()
            if distributed:
                x, y = dist.shard(x, y)  # this rank's 2 rows of the 8
            loss = F.softmax_cross_entropy(model(mg.Tensor(x), training=True), y)
            optimizer.zero_grad()
            loss.backward()
            if distributed:
                dist.average_gradients(model.parameters())  # the mean loss's gradient, on every rank
            optimizer.step()
            record["loss"][step] = loss.item()
            step += 1
            if step % EVAL_EVERY == 0:
                evaluate(model, record, step // EVAL_EVERY, dtype)
            if step == STEPS:
                break
    record["seconds"][0] = time.perf_counter() - started
    return record


def gathered(record):
    """Every rank's record, each array stacked on a new first axis (one entry per rank)."""
    return {name: dist.allgather(values, name) for name, values in record.items()}


def rank_copy(stacked, r=0):
    """Rank r's record out of gathered()'s."""
    return {name: values[r] for name, values in stacked.items()}


def side_by_side(jobs):
    """train(**job) for each job of a list, without collectives, job i on rank i mod 4, in
    rounds of 4. Returns every job's record, on every rank."""
    records = []
    for start in range(0, len(jobs), WORLD):
        index = start + RANK
        everyone = gathered(train(**jobs[index]) if index < len(jobs) else empty_record())
        records += [rank_copy(everyone, r) for r in range(len(jobs[start:start + WORLD]))]
    return records


# %% [markdown]
# ## Training: 4 ranks both ways, and one process
# First come the one-process references, side by side on the ranks: one per seed, and two in
# float32 for the last section. Then, seed by seed, the per-rank and the synchronized runs, each
# on all 4 ranks together. Every rank records its own loss at each step (its 2 rows' mean). The
# batch's mean loss is the mean over the ranks, since every rank holds 2 of the 8 rows.

# %%
if DISTRIBUTED:
    FIRST = SEEDS[0]
    jobs = [dict(mode="one process", seed=seed) for seed in SEEDS] + [
        dict(mode="one process", seed=FIRST, dtype="float32"),
        dict(mode="one process", seed=FIRST, dtype="float32", reverse_rows=True)]
    *references, one_float32, reversed_float32 = side_by_side(jobs)
    one_process = dict(zip(SEEDS, references))
    report(f"one process, batch {GLOBAL_BATCH}: " + ", ".join(
        f"seed {seed} {one_process[seed]['test accuracy'][-1]:.1%}" for seed in SEEDS)
        + " test accuracy (inference mode); "
          f"{np.mean([r['seconds'][0] for r in references]) / STEPS * 1e3:.2f} ms per step, side by side")

    runs = {}  # (mode, seed) -> each rank's record, stacked on a first axis
    for seed in SEEDS:
        for mode in ("per-rank", "synchronized"):
            runs[mode, seed] = gathered(train(mode, seed))
            accuracies = runs[mode, seed]["test accuracy"][:, -1]
            report(f"{NAMES[mode]}, seed {seed}: test accuracy {accuracies[0]:.1%} on rank 0 (ranks: "
                   + ", ".join(f"{a:.1%}" for a in accuracies) + f"); "
                   f"{runs[mode, seed]['seconds'][0, 0] / STEPS * 1e3:.2f} ms per step")
    synchronized_float32 = rank_copy(gathered(train("synchronized", FIRST, "float32")))

# %% [markdown]
# ## Results: test accuracy
# The final test accuracy in inference mode: the mean over seeds, then each seed. For the
# 4-rank runs it is rank 0's copy. Next to it, the training loss over the last 100 steps (mean
# over seeds; chance is ln 10 = 2.30). Lesson 11 measured, on one process in float32, 52.6%
# for BatchNorm at batch 2 and 96.6% at batch 8.

# %%
LAST = min(100, STEPS)


def final_accuracy(mode, seed):
    return float(one_process[seed]["test accuracy"][-1] if mode == "one process"
                 else runs[mode, seed]["test accuracy"][0, -1])


def batch_loss(mode, seed):
    """The batch's mean loss at each step: the ranks' losses averaged (2 rows each)."""
    return one_process[seed]["loss"] if mode == "one process" else runs[mode, seed]["loss"].mean(axis=0)


def mean_accuracy(mode):
    return float(np.mean([final_accuracy(mode, seed) for seed in SEEDS]))


if DISTRIBUTED:
    final_loss = {mode: float(np.mean([batch_loss(mode, seed)[-LAST:].mean() for seed in SEEDS])) for mode in MODES}
    report(f"\n| run | BatchNorm statistics over | test accuracy: mean ({', '.join(f'seed {s}' for s in SEEDS)}) | "
           f"training loss, last {LAST} steps |")
    report("|---|---|---|---|")
    over = {"per-rank": f"each rank's {ROWS_PER_RANK} rows", "synchronized": f"all {GLOBAL_BATCH} rows",
            "one process": f"the {GLOBAL_BATCH} rows"}
    for mode in MODES:
        report(f"| {NAMES[mode]} | {over[mode]} | {mean_accuracy(mode):.1%} ("
               + ", ".join(f"{final_accuracy(mode, seed):.1%}" for seed in SEEDS)
               + f") | {final_loss[mode]:.2f} |")
    gap = mean_accuracy("synchronized") - mean_accuracy("per-rank")
    report(f"\nPer-rank BatchNorm ends {gap:.1%} below synchronized BatchNorm. The ranks average their gradients "
           f"over all {GLOBAL_BATCH} images, but each layer still trains on pairs normalized by their own "
           f"statistics. So it trains almost as lesson 11's batch 2 did: training loss "
           f"{final_loss['per-rank']:.2f} here, 2.03 there, near chance. The averaged gradients lift its test "
           f"accuracy from lesson 11's 52.6% to {mean_accuracy('per-rank'):.1%}, still far below. Synchronized, "
           f"the same {RANKS} ranks of {ROWS_PER_RANK} rows reach {mean_accuracy('synchronized'):.1%}, as lesson "
           f"11's batch 8 did (96.6%), and exactly what one process reaches on the same batches.")
    if LEADER:
        # Checked on seeds 0 to 7 before fixing them; each holds for every seed on its own, the
        # smallest margins being 0.7 points (94.7%), 3.9 points (gap 28.9) and 0.27 (loss 1.77).
        # Quick mode's 300 steps (seed 0: 90.3% and 54.3%, losses 0.45 and 1.89) get their own.
        assert mean_accuracy("synchronized") >= (0.85 if QUICK else 0.94), "synchronized should train as batch 8"
        assert mean_accuracy("per-rank") <= 0.75, "per-rank BatchNorm should stay far below"
        assert gap >= (0.15 if QUICK else 0.25), f"per-rank BatchNorm should be far worse, is only {gap:.1%} below"
        assert all(final_accuracy("per-rank", s) <= final_accuracy("synchronized", s) - 0.15 for s in SEEDS)
        assert final_loss["per-rank"] >= 1.5, "per-rank BatchNorm's training loss should stay near chance"
        assert final_loss["synchronized"] <= (0.6 if QUICK else 0.4), "synchronized BatchNorm should learn"

# %% [markdown]
# ## Results: synchronized BatchNorm is the one process, to rounding
# The largest difference from the one-process run, over every seed. The quantities are the
# batch's loss at every step, and after training the weights, the moving statistics, the
# test-set logits and the test accuracy. The first column gives each quantity's size, for
# scale. float64 keeps about 16 digits, so one rounding of a number near 1 is 1e-16. The two
# runs round differently: the ranks' statistics are combined in their own way, and their
# gradients are summed in another order. 1,500 steps carry those differences along. The
# per-rank column is the same comparison, for scale.

# %%
GROUPS = {"Dense kernels and biases": (".kernel", ".bias"), "gamma and beta": (".gamma", ".beta"),
          "moving means": (".moving_mean",), "moving variances": (".moving_variance",)}


def state_slices():
    """Where each group's weights lie in snapshot()'s vector."""
    layout = paper_mlp("relu", batch_norm=True)
    layout.build((None, x_train.shape[1]))
    slices, start = {group: [] for group in GROUPS}, 0
    for name, weight in layout.named_weights():
        if weight.dtype.kind != "f":
            continue
        for group, endings in GROUPS.items():
            if name.endswith(endings):
                slices[group].append(np.arange(start, start + weight.size))
        start += weight.size
    return {group: np.concatenate(parts) for group, parts in slices.items()}


def comparisons(mode):
    """Per quantity: (its largest magnitude in the one-process runs, the largest |mode - one
    process|), over every seed; rank 0's copy for the 4-rank runs."""
    rows = {}

    def add(name, reference, other):
        size, difference = rows.get(name, (0.0, 0.0))
        rows[name] = (max(size, float(np.abs(reference).max())),
                      max(difference, float(np.abs(other - reference).max())))

    for seed in SEEDS:
        one, ours = one_process[seed], rank_copy(runs[mode, seed])
        add(f"batch loss, every one of the {STEPS} steps", one["loss"], batch_loss(mode, seed))
        for group, where in SLICES.items():
            add(f"{group}, after training", one["state"][-1, where], ours["state"][-1, where])
        add("test logits after training (inference mode)", one["logits"], ours["logits"])
        add("test accuracy after training", one["test accuracy"][-1:], ours["test accuracy"][-1:])
        add(f"test accuracy, all {len(one['test accuracy'])} evaluations", one["test accuracy"],
            ours["test accuracy"])
    return rows


def weight_distance(record, reference):
    """max |w - w reference| over the trainable weights (kernels, biases, gamma, beta), at each
    evaluation."""
    return np.abs(record["state"][:, TRAINABLE] - reference["state"][:, TRAINABLE]).max(axis=1)


if DISTRIBUTED:
    SLICES = state_slices()
    TRAINABLE = np.concatenate([SLICES["Dense kernels and biases"], SLICES["gamma and beta"]])
    table = {mode: comparisons(mode) for mode in ("synchronized", "per-rank")}
    report(f"\n| quantity (max over seeds {', '.join(map(str, SEEDS))}) | size: max abs, one process | "
           "synchronized - one process | per-rank - one process |")
    report("|---|---|---|---|")
    for name, (size, difference) in table["synchronized"].items():
        if "accuracy" in name:
            report(f"| {name} | {size:.1%} | {difference * 100:.2g} points | "
                   f"{table['per-rank'][name][1] * 100:.3g} points |")
        else:
            report(f"| {name} | {size:.3g} | {difference:.2g} | {table['per-rank'][name][1]:.2g} |")

    # The ranks themselves: synchronized, every rank holds the same network, bit for bit;
    # per rank, the weights agree (the gradients are averaged) but the moving statistics do not.
    def spread_between_ranks(mode, groups):
        where = np.concatenate([SLICES[g] for g in groups])
        return max(float(np.abs(runs[mode, s]["state"][:, -1, where] - runs[mode, s]["state"][0, -1, where]).max())
                   for s in SEEDS)

    weights, statistics = ("Dense kernels and biases", "gamma and beta"), ("moving means", "moving variances")
    spread = {(mode, kind): spread_between_ranks(mode, groups) for mode in ("synchronized", "per-rank")
              for kind, groups in (("weights", weights), ("statistics", statistics))}
    rank_accuracies = np.array([runs["per-rank", s]["test accuracy"][:, -1] for s in SEEDS])
    report(f"\nBetween the {RANKS} ranks, after training: synchronized, the weights differ by "
           f"{spread['synchronized', 'weights']:.2g} and the moving statistics by "
           f"{spread['synchronized', 'statistics']:.2g}, so all ranks hold one network, bit for bit. Per rank, the "
           f"weights differ by {spread['per-rank', 'weights']:.2g} too (the gradients are averaged), but the moving "
           f"statistics by up to {spread['per-rank', 'statistics']:.3g}, each rank's average of its own pairs: "
           f"{RANKS} networks in inference, whose test accuracies spread over up to "
           f"{(rank_accuracies.max(axis=1) - rank_accuracies.min(axis=1)).max():.1%} within a seed.")
    sync = table["synchronized"]
    if LEADER:
        assert spread["synchronized", "weights"] == 0 and spread["synchronized", "statistics"] == 0, spread
        assert spread["per-rank", "weights"] == 0, "averaged gradients keep the ranks' weights equal"
        assert spread["per-rank", "statistics"] >= 0.01, "per-rank moving statistics should differ between ranks"
        for name, (size, difference) in sync.items():
            per_rank = table["per-rank"][name][1]
            if "accuracy" in name:  # not one test image classified differently, at any evaluation
                assert difference == 0, (name, difference)
            else:  # rounding, a million times below per-rank's difference
                assert difference <= 1e-10 * max(size, 1), (name, difference, size)
                assert per_rank >= 1e6 * difference and per_rank >= 1e-2, (name, difference, per_rank)

# %% [markdown]
# ## Why float64: the same comparison in float32
# Each float32 step of the synchronized ranks is one process's step to float32 rounding: the
# first section showed it on one batch. Over 1,500 steps, though, float32 rounding does not stay
# small. A ReLU's derivative jumps from 0 to 1 at 0. When some unit's input lies within rounding
# of 0 for some image, two runs that differ by rounding send that image's gradient through
# the unit or not. One step then moves them apart by a real amount, and the runs are two
# different trainings from there on.
#
# This is not about MPI. One process and the same process fed each batch's rows in reverse
# order do the same arithmetic, summed in another order, and part ways in the same manner. Here
# are the first seed's float32 runs: the step at which the weights first differ by more than
# 1e-3, and where they end. The float64 runs above never get near that.

# %%
if DISTRIBUTED:
    steps = np.arange(STEPS // EVAL_EVERY + 1) * EVAL_EVERY
    sync64 = weight_distance(rank_copy(runs["synchronized", FIRST]), one_process[FIRST])
    float32_distances = {
        "synchronized - one process, float32": weight_distance(synchronized_float32, one_float32),
        "one process with rows reversed - one process, float32": weight_distance(reversed_float32, one_float32),
        "synchronized - one process, float64": sync64,
    }
    report(f"\nseed {FIRST}: max |weight difference| over the kernels, biases, gamma and beta")
    report(f"| runs compared | at step {EVAL_EVERY} | first step past 1e-3 | after step {STEPS} |")
    report("|---|---|---|---|")
    for name, distance in float32_distances.items():
        past = steps[np.flatnonzero(distance > 1e-3)]
        report(f"| {name} | {distance[1]:.2g} | {past[0] if len(past) else 'never'} | {distance[-1]:.2g} |")
    report(f"float32 test accuracy after training: one process {one_float32['test accuracy'][-1]:.1%} (the same "
           f"steps as fit(), so lesson 11's seed-{FIRST} run at batch 8), with rows reversed "
           f"{reversed_float32['test accuracy'][-1]:.1%}, synchronized "
           f"{synchronized_float32['test accuracy'][-1]:.1%}. "
           "The differences are rounding, amplified by training: the same in kind with MPI and without.")
    if LEADER:
        assert float32_distances["synchronized - one process, float64"].max() <= 1e-10, "float64 stays at rounding"
        if not QUICK:  # 300 steps may end before the jump (seed 0: rows reversed jumps at step 800)
            for name in list(float32_distances)[:2]:  # float32, with MPI and without: apart by the end
                assert float32_distances[name][-1] >= 1e-3, name

# %% [markdown]
# ## The plot
# Left: test accuracy over training, in inference mode, as a mean over seeds, with the range
# of the seeds as a band. The synchronized line lies on the one-process line. Right: how far
# each run's weights are from the one-process run's, over training, on a log scale: the
# 4-rank runs in float64 (the largest over seeds), and the first seed in float32. The dotted
# lines are one rounding of the largest weight, in float64 and in float32.

# %%
if DISTRIBUTED and LEADER:
    plt = lesson.pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = {"per-rank": dict(linestyle="-", linewidth=1.5), "synchronized": dict(linestyle="--", linewidth=1.5),
              "one process": dict(linestyle="-", linewidth=4, alpha=0.3)}
    for mode in MODES:
        curves = np.array([one_process[s]["test accuracy"] if mode == "one process" else
                           runs[mode, s]["test accuracy"][0] for s in SEEDS])
        left.plot(steps, curves.mean(axis=0), color=COLOURS[mode], label=NAMES[mode], **styles[mode])
        left.fill_between(steps, curves.min(axis=0), curves.max(axis=0), color=COLOURS[mode], alpha=0.1)
    left.set(xlabel="step", ylabel="test accuracy (inference mode)", ylim=(0, 1),
             title=f"ReLU 3x100 network on the digits, lr {LEARNING_RATE}, float64\nline: mean over {len(SEEDS)} "
                   f"seed{'s' if len(SEEDS) > 1 else ''}; band: min to max")
    left.legend(fontsize="small", loc="lower right")

    def positive(values):
        return np.where(values > 0, values, np.nan)  # a log scale cannot show 0

    for mode in ("per-rank", "synchronized"):
        curves = np.array([weight_distance(rank_copy(runs[mode, s]), one_process[s]) for s in SEEDS])
        right.plot(steps[1:], positive(curves.max(axis=0)[1:]), color=COLOURS[mode], marker="o", markersize=3,
                   label=f"{mode} - one process, float64")
    for name, colour in (("synchronized - one process, float32", "tab:cyan"),
                         ("one process with rows reversed - one process, float32", "tab:grey")):
        right.plot(steps[1:], positive(float32_distances[name][1:]), color=colour, marker="s", markersize=3,
                   label=f"{name.replace('one process with rows reversed', 'rows reversed')} (seed {FIRST})")
    largest = max(np.abs(one_process[s]["state"][-1, TRAINABLE]).max() for s in SEEDS)
    for dtype, style in (("float32", "-."), ("float64", ":")):
        right.axhline(float(np.finfo(dtype).eps) * largest, color="black", linestyle=style, linewidth=0.8,
                      label=f"one {dtype} rounding of the largest weight")
    right.set_yscale("log")
    right.set(xlabel="step", ylabel="max |weight - one-process weight|",
              title="Distance from the one-process run\n(kernels, biases, gamma, beta; rank 0's copy)")
    right.legend(fontsize="x-small", loc="center right")
    figure.tight_layout()
    report(f"plot of test accuracy and weight distances over training: "
           f"{lesson.keep(figure, 'lesson12_synchronized.png')}")

# %% [markdown]
# ## Run logs
# Rank 0 writes one CSV per run to runs/lesson12/, in the format of `minigrad.runlog`. The
# loss is the batch's mean loss since the previous evaluation, and the accuracies are in
# inference mode. `scripts/plot_curves.py` plots them, as for lessons 7 and 11.

# %%
if DISTRIBUTED and LEADER:
    folder = lesson.runs_dir("lesson12")
    for seed in SEEDS:
        for mode in MODES:
            record = one_process[seed] if mode == "one process" else rank_copy(runs[mode, seed])
            losses = batch_loss(mode, seed)
            with RunLog(folder / f"{mode.replace(' ', '-')}-seed{seed}.csv") as log:
                for index, accuracy in enumerate(record["test accuracy"]):
                    window = losses[max(0, (index - 1) * EVAL_EVERY):index * EVAL_EVERY]
                    log.log(index * EVAL_EVERY, float(window.mean()) if len(window) else math.nan,
                            float(record["train accuracy"][index]), float(accuracy), LEARNING_RATE)
    report(f"run logs: {folder}")

# %%
if DISTRIBUTED:
    report(f"\nThe point: under data parallelism BatchNorm's batch is whatever each rank holds. Per rank, "
           f"{RANKS} ranks of {ROWS_PER_RANK} rows normalize as batch {ROWS_PER_RANK} does and train nearly as badly "
           f"({mean_accuracy('per-rank'):.0%} test accuracy), however many ranks average their gradients. "
           f"Synchronized, their statistics are those of all {GLOBAL_BATCH} rows, and the {RANKS} ranks compute what "
           f"one process computes on the whole batch, to rounding: {mean_accuracy('synchronized'):.1%} against "
           f"{mean_accuracy('one process'):.1%}, weights within "
           f"{sync['Dense kernels and biases, after training'][1]:.1g} after {STEPS} steps in float64.")

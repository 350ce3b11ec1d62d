# %% [markdown]
# # Lesson 7: training with and without BatchNorm, on real digits
#
# The paper's MNIST experiment, on the 8x8 digits that ship with scikit-learn: three hidden
# Dense layers of 100 units, a sigmoid (the paper's choice) or a ReLU after each, weights
# started as small Gaussians, plain SGD on mini-batches of 60. The BatchNorm network puts
# BatchNorm between each hidden Dense and its nonlinearity; nothing else changes.
#
# We sweep learning rates 0.1, 0.5 and 1.0 over several seeds, record how many steps each
# run needs to reach 95% test accuracy, and check the paper's two claims:
#   1. with BatchNorm the target is reached in several times fewer steps;
#   2. with BatchNorm, large learning rates train, where the plain network stalls or diverges.
# Test accuracy is measured in inference mode (training=False): the BatchNorm network is
# judged with its moving statistics, as it would be when deployed. The last part shows why
# that makes the momentum of the moving averages matter early in training.
#
# Every run writes a CSV log under runs/lesson07/ (plot any of them with
# scripts/plot_curves.py); the plots go to runs/.
#
# Run: python lessons/07_training_with_and_without_bn.py   (about 40 s on 2 cores; --quick: seconds)

# %%
import argparse
import os
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: write files, open no windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
from minigrad.training import fit, paper_mlp  # noqa: E402

parser = argparse.ArgumentParser(description="Lesson 7: training with and without BatchNorm")
parser.add_argument("--quick", action="store_true", help="a short run (also MINIGRAD_QUICK=1)")
QUICK = parser.parse_args().quick or os.environ.get("MINIGRAD_QUICK") == "1"

TARGET = 0.95
ACTIVATIONS = ["relu"] if QUICK else ["sigmoid", "relu"]
LEARNING_RATES = [0.5, 1.0] if QUICK else [0.1, 0.5, 1.0]
SEEDS = [0] if QUICK else [0, 1, 2]
STEPS = 200 if QUICK else 700
BN_MOMENTUM = 0.9  # why not Keras's 0.99: see the last part of this lesson
RUNS = Path("runs")
data = mg.data.load_digits(seed=0)
print(f"digits: {len(data[0])} training and {len(data[2])} test images of 8x8 pixels; "
      f"{STEPS} steps of batch 60 = {STEPS * 60 / len(data[0]):.0f} epochs per run")

# %% [markdown]
# ## The sweep
# Each configuration is trained from the same seeds, so a BatchNorm run and a plain run
# with the same seed see the same batches in the same order. Progress prints as it goes.

# %%
results = {}  # (activation, batch_norm, learning_rate) -> list of History, one per seed
configurations = [(a, bn, lr) for a in ACTIVATIONS for bn in (False, True) for lr in LEARNING_RATES]
total = len(configurations) * len(SEEDS)
done = 0
for activation, batch_norm, lr in configurations:
    for seed in SEEDS:
        name = f"{activation}-{'bn' if batch_norm else 'plain'}-lr{lr}-seed{seed}"
        history = fit(paper_mlp(activation, batch_norm, bn_momentum=BN_MOMENTUM), data,
                      learning_rate=lr, steps=STEPS, seed=seed, eval_every=20,
                      log_path=RUNS / "lesson07" / f"{name}.csv")
        results.setdefault((activation, batch_norm, lr), []).append(history)
        done += 1
        reached = history.steps_to(TARGET)
        print(f"[{done:2d}/{total}] {name:26s} {TARGET:.0%} at step "
              f"{reached if reached is not None else '-':>4}, final {history.final_accuracy:6.1%}"
              f"{'  DIVERGED' if history.diverged else ''}  ({history.seconds:.1f} s)", flush=True)

# %% [markdown]
# ## The table
# "steps to 95%" is the median over seeds of the first evaluation (every 20 steps) at or
# above 95% test accuracy; a run that never gets there counts as "> STEPS", and the median
# is then a lower bound. "final" is the test accuracy after the last step, mean over seeds.


# %%
def median_steps(histories):
    """Median steps to the target; a run that missed it counts as STEPS + 1 (a lower bound)."""
    return statistics.median(h.steps_to(TARGET) or STEPS + 1 for h in histories)


def shown(steps):
    return f"> {STEPS}" if steps > STEPS else f"{steps:.0f}"


header = f"| activation | BatchNorm | lr | steps to {TARGET:.0%} (median) | per seed | final accuracy |"
print(header)
print("|" + "|".join("---" for _ in range(6)) + "|")
for (activation, batch_norm, lr), histories in results.items():
    per_seed = ", ".join(str(h.steps_to(TARGET) or "-") for h in histories)
    final = np.mean([h.final_accuracy for h in histories])
    print(f"| {activation} | {'yes' if batch_norm else 'no'} | {lr} | {shown(median_steps(histories))} "
          f"| {per_seed} | {final:.1%} |")

# %% [markdown]
# ## Claim 1: several times fewer steps
# For each activation, compare the best learning rate with BatchNorm against the best
# without it (the fairest comparison for the plain network: it gets its own best lr).
#
# The plain sigmoid network does not merely train slowly: it sits at chance (10%) for the
# whole run. With weights of std 0.05, each layer shrinks the signal (a sigmoid's slope is at
# most 1/4), so every hidden unit outputs about 0.5 whatever the image, and the gradients
# reaching the lower layers are tiny. BatchNorm rescales each layer's input to unit variance,
# whatever the weights' scale, so the signal survives. (Glorot initialization, Dense's
# default, would rescue the plain network too: that is exactly the problem it addresses.)

# %%
for activation in ACTIVATIONS:
    best_bn = min(median_steps(results[activation, True, lr]) for lr in LEARNING_RATES)
    best_plain = min(median_steps(results[activation, False, lr]) for lr in LEARNING_RATES)
    speedup = best_plain / best_bn
    print(f"{activation}: best with BatchNorm {shown(best_bn)} steps, best without {shown(best_plain)}: "
          f"{'at least ' if best_plain > STEPS else ''}{speedup:.1f}x fewer")
    assert speedup >= 3, f"{activation}: BatchNorm should need several times fewer steps, got {speedup:.1f}x"

# %% [markdown]
# ## Claim 2: large learning rates
# At lr = 1.0 every BatchNorm run reaches the target, and no plain run does: the plain
# network's layers amplify a large step until the units saturate (sigmoid) or die (ReLU).

# %%
for activation in ACTIVATIONS:
    bn_runs, plain_runs = results[activation, True, 1.0], results[activation, False, 1.0]
    print(f"{activation}, lr 1.0: final accuracy with BatchNorm "
          f"{', '.join(f'{h.final_accuracy:.1%}' for h in bn_runs)}; without "
          f"{', '.join(f'{h.final_accuracy:.1%}' for h in plain_runs)}")
    assert all(h.steps_to(TARGET) is not None for h in bn_runs)
    assert all(h.steps_to(TARGET) is None for h in plain_runs)


# %% [markdown]
# ## The plot: test accuracy against steps
# One panel per activation and learning rate; the line is the median over seeds and the
# band spans the seeds.

# %%
def band(axes, histories, label, colour):
    steps = histories[0].step
    accuracies = np.array([h.test_accuracy for h in histories if len(h.test_accuracy) == len(steps)])
    axes.plot(steps, np.median(accuracies, axis=0), color=colour, label=label)
    axes.fill_between(steps, accuracies.min(axis=0), accuracies.max(axis=0), color=colour, alpha=0.2)


RUNS.mkdir(exist_ok=True)
figure, grid = plt.subplots(len(ACTIVATIONS), len(LEARNING_RATES), figsize=(4 * len(LEARNING_RATES),
                            3.2 * len(ACTIVATIONS)), sharex=True, sharey=True, squeeze=False)
for row, activation in enumerate(ACTIVATIONS):
    for column, lr in enumerate(LEARNING_RATES):
        axes = grid[row][column]
        band(axes, results[activation, False, lr], "without BatchNorm", "tab:orange")
        band(axes, results[activation, True, lr], "with BatchNorm", "tab:blue")
        axes.axhline(TARGET, color="grey", linestyle=":", linewidth=1)
        axes.set(title=f"{activation}, lr {lr}", ylim=(0, 1))
        if row == len(ACTIVATIONS) - 1:
            axes.set_xlabel("step")
        if column == 0:
            axes.set_ylabel("test accuracy")
grid[0][0].legend(loc="lower right", fontsize="small")
figure.tight_layout()
curves_path = RUNS / "lesson07_test_accuracy.png"
figure.savefig(curves_path, dpi=110)
plt.close(figure)
print(f"plot of test accuracy against steps: {curves_path.resolve()}")

# %% [markdown]
# ## Why momentum 0.9 and not Keras's 0.99: the warm-up of the moving statistics
# Eq. 5 and 6 start the moving mean at 0 and the moving variance at 1, and each step keeps
# a fraction `momentum` of the old value. After t steps the start still weighs momentum^t:
# with 0.99 that is 37% after 100 steps and 5% after 300; with 0.9 it is 0.003% after 100.
# Early in training the network changes fast, so with 0.99 the moving statistics describe
# the network of a few hundred steps ago, and inference-mode test accuracy lags far behind
# what the network can already do. 0.9 averages about the last 10 batches (600 samples),
# which is plenty for stable statistics of 100 units, and it keeps up. Keras's 0.99 suits
# long runs (many thousands of steps), where its lower noise matters more than its lag.
# Here: the ReLU + BatchNorm network at lr 0.5, with momentum 0.99, 0.9 and 0.

# %%
warmup = {}
for momentum in (0.99, 0.9, 0.0):
    warmup[momentum] = [
        fit(paper_mlp("relu", True, bn_momentum=momentum), data, learning_rate=0.5, steps=min(STEPS, 300),
            seed=seed, eval_every=20, log_path=RUNS / "lesson07" / f"warmup-momentum{momentum}-seed{seed}.csv")
        for seed in SEEDS[:2]
    ]
    early = np.median([h.test_accuracy[h.step.index(100)] for h in warmup[momentum]])
    print(f"momentum {momentum:4}: test accuracy at step 100 {early:.1%}, "
          f"{TARGET:.0%} at step {shown(median_steps(warmup[momentum]))}, "
          f"the initial statistics still weigh {momentum ** 100:.2g} there")
assert median_steps(warmup[0.99]) >= 3 * median_steps(warmup[0.9]), "0.99 should lag well behind 0.9"

figure, axes = plt.subplots(figsize=(6, 3.5))
for momentum, colour in zip(warmup, ["tab:red", "tab:blue", "tab:green"]):
    band(axes, warmup[momentum], f"momentum {momentum}", colour)
axes.axhline(TARGET, color="grey", linestyle=":", linewidth=1)
axes.set(xlabel="step", ylabel="test accuracy (inference mode)", ylim=(0, 1),
         title="ReLU + BatchNorm, lr 0.5: warm-up of the moving statistics")
axes.legend(loc="lower right", fontsize="small")
figure.tight_layout()
warmup_path = RUNS / "lesson07_momentum_warmup.png"
figure.savefig(warmup_path, dpi=110)
plt.close(figure)
print(f"plot of the warm-up: {warmup_path.resolve()}")
print(f"run logs: {(RUNS / 'lesson07').resolve()}  (python scripts/plot_curves.py runs/lesson07/*.csv -o curves.png)")

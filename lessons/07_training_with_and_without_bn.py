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
# Run: python lessons/07_training_with_and_without_bn.py   (13 to 38 s on 2 idle cores, by machine; --quick: seconds)

# %%
import statistics
from pathlib import Path

import numpy as np

import minigrad as mg
from minigrad import lesson

options = lesson.options("Lesson 7: training with and without BatchNorm")
QUICK = options.quick
plt = lesson.pyplot()

TARGET = 0.95
ACTIVATIONS = ["relu"] if QUICK else ["sigmoid", "relu"]
LEARNING_RATES = [0.5, 1.0] if QUICK else [0.1, 0.5, 1.0]
SEEDS = [0] if QUICK else [0, 1, 2]
STEPS = 200 if QUICK else 700
BN_MOMENTUM = 0.9  # why not Keras's 0.99: see the last part of this lesson
RUNS = lesson.runs_dir()
data = mg.data.load_digits(seed=0)
print(f"digits: {len(data[0])} training and {len(data[2])} test images of 8x8 pixels; "
      f"{STEPS} steps of batch 60 = {STEPS * 60 / len(data[0]):.0f} epochs per run")

# %% [markdown]
# ## The sweep
# Each configuration is trained from the same seeds, so a BatchNorm run and a plain run
# with the same seed see the same batches in the same order. The runs are independent, so
# they run side by side, one per core, each with one BLAS thread (lesson.run_parallel):
# every run seeds its own randomness, so the results are exactly those of a serial run.
# Progress prints as they finish, in order.

# %%
configurations = [(a, bn, lr) for a in ACTIVATIONS for bn in (False, True) for lr in LEARNING_RATES]
jobs = [dict(activation=activation, batch_norm=batch_norm, bn_momentum=BN_MOMENTUM, learning_rate=lr,
             steps=STEPS, seed=seed, eval_every=20,
             log_path=RUNS / "lesson07" / f"{activation}-{'bn' if batch_norm else 'plain'}-lr{lr}-seed{seed}.csv")
        for activation, batch_norm, lr in configurations for seed in SEEDS]
results = {}  # (activation, batch_norm, learning_rate) -> list of History, one per seed
for done, (job, history) in enumerate(zip(jobs, lesson.run_parallel(lesson.train_paper_mlp, jobs)), 1):
    results.setdefault((job["activation"], job["batch_norm"], job["learning_rate"]), []).append(history)
    reached = history.steps_to(TARGET)
    print(f"[{done:2d}/{len(jobs)}] {job['log_path'].stem:26s} {TARGET:.0%} at step "
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
# band spans the seeds (from the lowest to the highest).

# %%
def band(axes, histories, label, colour):
    steps = histories[0].step
    accuracies = np.array([h.test_accuracy for h in histories if len(h.test_accuracy) == len(steps)])
    axes.plot(steps, np.median(accuracies, axis=0), color=colour, label=label)
    axes.fill_between(steps, accuracies.min(axis=0), accuracies.max(axis=0), color=colour, alpha=0.2)


def finish(figure, axes, title, seeds):
    """The 95% line on every panel, one legend for all of them, and what the band means."""
    for each in np.ravel(axes):
        each.axhline(TARGET, color="grey", linestyle=":", linewidth=1, label=f"{TARGET:.0%} target")
        each.set(ylim=(0, 1), ylabel="test accuracy (inference mode)")
    handles, labels = np.ravel(axes)[0].get_legend_handles_labels()
    figure.suptitle(f"{title}\nline: median over {seeds} seed{'s' if seeds > 1 else ''}; band: min to max over the seeds",
                    fontsize="medium")
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small", frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 1))


figure, grid = plt.subplots(len(ACTIVATIONS), len(LEARNING_RATES), figsize=(4 * len(LEARNING_RATES),
                            3.2 * len(ACTIVATIONS) + 1), sharex=True, sharey=True, squeeze=False)
for row, activation in enumerate(ACTIVATIONS):
    for column, lr in enumerate(LEARNING_RATES):
        axes = grid[row][column]
        band(axes, results[activation, False, lr], "without BatchNorm", "tab:orange")
        band(axes, results[activation, True, lr], "with BatchNorm", "tab:blue")
        axes.set(title=f"{activation}, lr {lr}", xlabel="step")
finish(figure, grid, "The paper's network on the digits, with and without BatchNorm", len(SEEDS))
print(f"plot of test accuracy against steps: {lesson.keep(figure, 'lesson07_test_accuracy.png')}")

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
MOMENTA = (0.99, 0.9, 0.0)
warmup_jobs = [dict(activation="relu", batch_norm=True, bn_momentum=momentum, learning_rate=0.5,
                    steps=min(STEPS, 300), seed=seed, eval_every=20,
                    log_path=RUNS / "lesson07" / f"warmup-momentum{momentum}-seed{seed}.csv")
               for momentum in MOMENTA for seed in SEEDS[:2]]
warmup = {momentum: [] for momentum in MOMENTA}
for job, history in zip(warmup_jobs, lesson.run_parallel(lesson.train_paper_mlp, warmup_jobs)):
    warmup[job["bn_momentum"]].append(history)
for momentum, histories in warmup.items():
    early = np.median([h.test_accuracy[h.step.index(100)] for h in histories])
    print(f"momentum {momentum:4}: test accuracy at step 100 {early:.1%}, "
          f"{TARGET:.0%} at step {shown(median_steps(histories))}, "
          f"the initial statistics still weigh {momentum ** 100:.2g} there")
assert median_steps(warmup[0.99]) >= 3 * median_steps(warmup[0.9]), "0.99 should lag well behind 0.9"
print("So the moving statistics, not the network, hold momentum 0.99 back: judged in inference "
      "mode, the same network looks untrained until the initial statistics have decayed away.")

figure, axes = plt.subplots(figsize=(6, 4.2))
for momentum, colour in zip(warmup, ["tab:red", "tab:blue", "tab:green"]):
    band(axes, warmup[momentum], f"momentum {momentum}", colour)
axes.set(xlabel="step")
finish(figure, np.array([axes]), "ReLU + BatchNorm, lr 0.5: warm-up of the moving statistics", len(SEEDS[:2]))
print(f"plot of the warm-up: {lesson.keep(figure, 'lesson07_momentum_warmup.png')}")
plot_curves = Path(mg.__file__).resolve().parent.parent / "scripts" / "plot_curves.py"
print(f"run logs: {RUNS / 'lesson07'}\n  plot them, grouped over seeds: python {plot_curves} "
      f"{RUNS / 'lesson07'}/*.csv --group --target {TARGET} -o {RUNS / 'lesson07_curves.png'}")

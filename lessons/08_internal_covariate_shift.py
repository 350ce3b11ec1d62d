# %% [markdown]
# # Lesson 8: internal covariate shift (the paper's Figure 1, b and c)
#
# The paper's motivation: while the lower layers train, the distribution of each layer's
# input keeps moving, so every layer chases a moving target. Figure 1(b, c) shows it on
# MNIST: the 15th, 50th and 85th percentiles of the input to one sigmoid of the last hidden
# layer, over training, without and with BatchNorm. Here is the same measurement on the
# digits, with lesson 7's sigmoid network.
#
# "The input to the sigmoid" is what the sigmoid receives: the Dense output in the plain
# network, the BatchNorm output (gamma * x_hat + beta) in the other. It is measured on the
# whole test set in inference mode, every 25 steps.
#
# One change from lesson 7: the weights start from Keras's default Glorot initialization,
# not the paper's std 0.05. With std 0.05 the plain sigmoid network does not train at all
# (lesson 7), and every image then gives the same input, so there would be no distribution
# to look at. With Glorot both networks train, which is the comparison the figure makes.
#
# Run: python lessons/08_internal_covariate_shift.py   (about 10 s; --quick: seconds)

# %%
import numpy as np

import minigrad as mg
from minigrad import lesson
from minigrad.nn.layers import Sigmoid
from minigrad.training import fit, paper_mlp

QUICK = lesson.options("Lesson 8: internal covariate shift").quick
plt = lesson.pyplot()

STEPS = 400 if QUICK else 2000
PERCENTILES = (15, 50, 85)
SETTLED = 100  # ignore the first steps, where BatchNorm's moving statistics are still warming up
data = mg.data.load_digits(seed=0)
x_test = mg.Tensor(data[2])


def last_sigmoid_input(model):
    """The input of the last hidden layer's sigmoid for every test image, shape (N, 100)."""
    last = max(i for i, layer in enumerate(model) if isinstance(layer, Sigmoid))
    h = x_test
    with mg.no_grad():
        for layer in list(model)[:last]:
            h = layer(h, training=False)
    return h.numpy()


# %% [markdown]
# ## Train both networks, recording the percentiles
# The same seed gives both networks the same initial Dense weights, so unit 0 starts
# identical in both.

# %%
recorded = {}  # batch_norm -> (steps, percentiles of shape (evaluations, 3, units), History)
for batch_norm in (False, True):
    model = paper_mlp("sigmoid", batch_norm, kernel_initializer="glorot_uniform")
    steps, percentiles = [], []

    def record(step, history):
        steps.append(step)
        percentiles.append(np.percentile(last_sigmoid_input(model), PERCENTILES, axis=0))

    history = fit(model, data, learning_rate=0.5, steps=STEPS, seed=0, eval_every=25, on_evaluate=record,
                  log_path=lesson.runs_dir("lesson08") / f"sigmoid-{'bn' if batch_norm else 'plain'}.csv")
    recorded[batch_norm] = (np.array(steps), np.array(percentiles), history)
    print(f"{'with' if batch_norm else 'without'} BatchNorm: final test accuracy "
          f"{history.final_accuracy:.1%} after {STEPS} steps ({history.seconds:.1f} s)")

# %% [markdown]
# ## How much does each distribution move?
# For every unit: how far its 15th, 50th and 85th percentiles ever stray from where they end,
# from step 100 on, measured in units of the final spread (85th minus 15th percentile). The
# median over the 100 units summarizes a "typical sigmoid", as in the paper.


# %%
def drift(steps, percentiles):
    settled = percentiles[steps >= SETTLED]
    spread = settled[-1, 2] - settled[-1, 0]
    return np.abs(settled - settled[-1]).max(axis=(0, 1)) / spread  # one number per unit


drifts = {bn: drift(steps, percentiles) for bn, (steps, percentiles, _) in recorded.items()}
for bn, values in drifts.items():
    print(f"{'with' if bn else 'without'} BatchNorm: the percentiles stray up to {np.median(values):.2f} "
          f"final spreads from their end point (median over units; 90th percentile {np.quantile(values, 0.9):.2f})")
ratio = np.median(drifts[False]) / np.median(drifts[True])
print(f"the plain network's sigmoid inputs move {ratio:.1f}x as much")
assert ratio >= (2 if QUICK else 3), f"BatchNorm should keep the distributions steadier, got {ratio:.1f}x"

# %% [markdown]
# ## The figure
# Unit 0 of the last hidden layer. Without BatchNorm the whole distribution slides and
# widens as the lower layers learn; with BatchNorm its mean and spread stay put (they can
# still move, slowly, through gamma and beta, but only if the loss wants them to).

# %%
figure, panels = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for axes, bn in zip(panels, (False, True)):
    steps, percentiles, _ = recorded[bn]
    for k, (p, style) in enumerate(zip(PERCENTILES, [":", "-", ":"])):
        axes.plot(steps, percentiles[:, k, 0], style, color="tab:blue" if bn else "tab:orange",
                  label=f"{p}th percentile")
    axes.set(xlabel="step", title=f"{'with' if bn else 'without'} BatchNorm")
    axes.set_ylabel("input to a last-layer sigmoid")
    axes.yaxis.set_tick_params(labelleft=True)
    axes.legend(fontsize="small")
figure.tight_layout()
print(f"plot of the percentiles over training: {lesson.keep(figure, 'lesson08_sigmoid_input_percentiles.png')}")
print("So BatchNorm holds each sigmoid's input distribution steady while the layers below it "
      "learn; without it the distribution keeps moving: the internal covariate shift of the "
      "paper's Figure 1.")

# %% [markdown]
# # Lesson 6: moving averages (Eq. 5 and Eq. 6), three conventions
#
#     Eq. 5:  moving_mean     = moving_mean     * momentum + mu_B      * (1 - momentum)
#     Eq. 6:  moving_variance = moving_variance * momentum + sigma_B^2 * (1 - momentum)
#
# Lesson 5's population statistics need every batch of the finished network. But the
# network keeps changing while it trains, so frameworks keep a running estimate instead,
# updated by each training batch. Three conventions:
#
# - Keras: Eq. 5 and 6 with momentum 0.99, fed the biased batch variance.
# - PyTorch: the same form, but its momentum (0.1) is the weight of the *new* batch, so it is
#   Keras's 0.9; and it feeds the unbiased m/(m-1) sigma_B^2 (Eq. 4).
# - Cumulative (PyTorch's momentum=None): the exact average of every batch so far, lesson 5's
#   Eq. 3b and 4 kept up to date: momentum (n-1)/n at the n-th batch.
#
# We feed all three the same stream of batches, in which the features change halfway, as
# a layer's input does when the layers below it learn, and compare how fast each tracks.
#
# Run: python lessons/06_moving_averages.py   (a few seconds; --quick is the same)

# %%
import numpy as np

import minigrad as mg
from minigrad import lesson
from minigrad.ops.batch_norm import batch_moments  # (Eq. 2 and 3a)

lesson.options("Lesson 6: moving averages (Eq. 5, 6)")  # --quick is accepted; this lesson takes seconds anyway
plt = lesson.pyplot()

# %% [markdown]
# ## The stream: a Dense layer's output on digits, and the Dense layer changes at step 400
# Before the change the features come from one random Dense(8); after it, from another,
# scaled by 2 and shifted by 1: their means and variances move, as in training.

# %%
STEPS, CHANGE, m = 1000, 400, 60
x_train, _, _, _ = mg.data.load_digits(seed=0)
pixels = x_train.astype(np.float64)
mg.random.manual_seed(0)
before_change = mg.nn.Dense(8, dtype="float64")
after_change = mg.nn.Dense(8, dtype="float64")
with mg.no_grad():
    phases = [before_change(mg.Tensor(pixels)).numpy(), 2.0 * after_change(mg.Tensor(pixels)).numpy() + 1.0]
truth = [(f.mean(0), f.var(0, ddof=1)) for f in phases]  # what the moving statistics should find

rng = np.random.default_rng(0)
stream = [phases[step >= CHANGE][rng.choice(len(pixels), m, replace=False)] for step in range(STEPS)]

conventions = {
    "Keras (momentum 0.99, biased)": mg.nn.BatchNorm(momentum=0.99, dtype="float64"),
    "PyTorch (momentum 0.1, unbiased)": mg.nn.BatchNorm(momentum=0.9, epsilon=1e-5, unbiased=True,
                                                        dtype="float64"),
    "cumulative (momentum None, unbiased)": mg.nn.BatchNorm(momentum=None, unbiased=True, dtype="float64"),
}
history = {name: ([], []) for name in conventions}
for batch in stream:
    for name, layer in conventions.items():
        layer(mg.Tensor(batch), training=True)
        history[name][0].append(layer.moving_mean.numpy().copy())
        history[name][1].append(layer.moving_variance.numpy().copy())

# %% [markdown]
# ## Each layer follows its formula
# Recompute Eq. 5 and 6 by hand from the batches (Eq. 2 and 3a per batch) and compare.

# %%
moments = [batch_moments(b, (0,)) for b in stream]
means, variances = [mo[0][0] for mo in moments], [mo[2][0] for mo in moments]
keras_mean, keras_variance = np.zeros(8), np.ones(8)  # Keras's initial moving statistics
torch_mean, torch_variance = np.zeros(8), np.ones(8)
for mu, var in zip(means, variances):
    keras_mean = keras_mean * 0.99 + mu * 0.01                          # Eq. 5
    keras_variance = keras_variance * 0.99 + var * 0.01                 # Eq. 6, biased
    torch_mean = torch_mean * 0.9 + mu * 0.1                            # Eq. 5, PyTorch's 0.1
    torch_variance = torch_variance * 0.9 + m / (m - 1) * var * 0.1     # Eq. 6 fed Eq. 4
cumulative_mean = np.mean(means, axis=0)
cumulative_variance = m / (m - 1) * np.mean(variances, axis=0)
expected = {"Keras (momentum 0.99, biased)": (keras_mean, keras_variance),
            "PyTorch (momentum 0.1, unbiased)": (torch_mean, torch_variance),
            "cumulative (momentum None, unbiased)": (cumulative_mean, cumulative_variance)}
for name, layer in conventions.items():
    np.testing.assert_allclose(layer.moving_mean.numpy(), expected[name][0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.numpy(), expected[name][1], rtol=1e-12)
print("each layer's moving_mean and moving_variance equal Eq. 5 and 6 recomputed by hand (1e-12)")

# %% [markdown]
# ## How fast does each track?
# After the change, count the steps until the moving mean is within 0.2 standard deviations
# of the new true mean (the median over the 8 features) and stays there. With momentum b the old value
# still weighs b^t after t steps, so the gap closes like b^t: about ln(gap) / ln(b) steps.
# The cumulative average weighs the 400 old batches as much as the new ones, forever.


# %%
def steps_to_track(name):
    new_mean, new_variance = truth[1]
    error = np.abs(np.array(history[name][0][CHANGE:]) - new_mean) / np.sqrt(new_variance)
    off = np.flatnonzero(np.median(error, axis=1) > 0.2)  # steps where the estimate is still off
    if len(off) == 0:
        return 0
    return None if off[-1] == len(error) - 1 else int(off[-1]) + 1


tracking = {name: steps_to_track(name) for name in conventions}
for name, steps in tracking.items():
    print(f"{name:38s} tracks the change within "
          f"{'more than ' + str(STEPS - CHANGE) if steps is None else steps} steps")
assert tracking["PyTorch (momentum 0.1, unbiased)"] < 50
assert 100 < tracking["Keras (momentum 0.99, biased)"] < 500
assert tracking["cumulative (momentum None, unbiased)"] is None

# %% [markdown]
# The price of fast tracking is noise: momentum 0.9 averages about 10 batches, 0.99 about
# 100. In the last 200 steps (the features are steady there) compare how much each moving
# mean wobbles, in units of the features' standard deviation.

# %%
for name in list(conventions)[:2]:
    tail = np.array(history[name][0][-200:])
    wobble = np.median(tail.std(axis=0) / np.sqrt(truth[1][1]))
    print(f"{name:38s} wobble of the moving mean: {wobble:.3f} standard deviations")
keras_wobble = np.median(np.array(history["Keras (momentum 0.99, biased)"][0][-200:]).std(0) / np.sqrt(truth[1][1]))
torch_wobble = np.median(np.array(history["PyTorch (momentum 0.1, unbiased)"][0][-200:]).std(0) / np.sqrt(truth[1][1]))
assert keras_wobble < torch_wobble

# %% [markdown]
# ## Biased against unbiased, in numbers
# Keras feeds Eq. 6 the biased sigma_B^2, which is (m-1)/m of the data's variance on
# average (lesson 5). Two layers with the same momentum, fed the same batches, one biased
# and one unbiased: their moving variances differ by exactly m/(m-1) once the initial value
# has decayed. At m = 60 that is 1.7%; at m = 4 it is 33%, and then the Keras layer's
# inference outputs have a visibly larger spread than in training.

# %%
for batch_size in (60, 4):
    biased = mg.nn.BatchNorm(momentum=0.99, dtype="float64")
    unbiased = mg.nn.BatchNorm(momentum=0.99, unbiased=True, dtype="float64")
    features = phases[0]
    for _ in range(1000):  # 0.99^1000 = 4e-5: the initial value has decayed
        batch = mg.Tensor(features[rng.choice(len(features), batch_size, replace=False)])
        biased(batch, training=True)
        unbiased(batch, training=True)
    ratio = np.median(unbiased.moving_variance.numpy() / biased.moving_variance.numpy())
    with mg.no_grad():
        spread = biased(mg.Tensor(features), training=False).numpy().std(axis=0)
    print(f"m = {batch_size:2d}: unbiased / biased moving variance = {ratio:.4f} (m/(m-1) = "
          f"{batch_size / (batch_size - 1):.4f}); the biased layer's inference outputs have std "
          f"{np.median(spread):.3f} on the full data, against 1 in training")
    np.testing.assert_allclose(ratio, batch_size / (batch_size - 1), rtol=1e-3)

# %% [markdown]
# ## The plot
# One feature's moving mean and moving variance under each convention, against the truth.
# Note the start as well: Keras's moving variance begins at 1 and, at momentum 0.99, is
# still far from the truth when the change comes, 400 steps later.

# %%
figure, (mean_axes, variance_axes) = plt.subplots(1, 2, figsize=(11, 3.8), sharex=True)
steps = np.arange(1, STEPS + 1)
for name in conventions:
    mean_axes.plot(steps, np.array(history[name][0])[:, 0], label=name)
    variance_axes.plot(steps, np.array(history[name][1])[:, 0], label=name)
for axes, k in ((mean_axes, 0), (variance_axes, 1)):
    true_values = np.where(steps <= CHANGE, truth[0][k][0], truth[1][k][0])
    axes.plot(steps, true_values, "k:", label="the truth (full data)")
    axes.axvline(CHANGE, color="grey", linewidth=0.5)
    axes.set(xlabel="step")
mean_axes.set(title="moving mean of feature 0", ylabel="moving mean")
variance_axes.set(title="moving variance of feature 0", ylabel="moving variance")
handles, labels = mean_axes.get_legend_handles_labels()
figure.legend(handles, labels, loc="lower center", ncol=2, fontsize="small", frameon=False)
figure.tight_layout(rect=(0, 0.14, 1, 1))
print(f"plot of the three moving averages: {lesson.keep(figure, 'lesson06_moving_averages.png')}")
print("So the three conventions trade lag for noise: PyTorch's 0.1 tracks a change fastest and "
      "wobbles most, Keras's 0.99 lags for hundreds of steps, and the cumulative average never "
      "forgets the old data.")

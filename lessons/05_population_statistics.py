# %% [markdown]
# # Lesson 5: population statistics (Eq. 3b and Eq. 4)
#
#     Eq. 3b:              E[x]   = E_B[mu_B]                    the mean of the batch means
#     Eq. 4:               Var[x] = m/(m-1) * E_B[sigma_B^2]     the unbiased variance
#
# In training, BatchNorm normalizes each batch with that batch's own mean and variance. At
# inference there may be one example, so there is no batch to take statistics of: the layer
# needs fixed statistics of the whole training data instead. The paper (and the Keras guide) take
# them from the mini-batches themselves: average the batch means, and average the batch
# variances, corrected by m/(m-1). This lesson checks both formulas against the statistics
# of the full data, shows why the m/(m-1) is there, and gradient-checks the layer in
# inference mode, where it is built on these statistics.
#
# Run: python lessons/05_population_statistics.py   (a few seconds; --quick: a second)

# %%

import numpy as np

import minigrad as mg
from minigrad import lesson
from minigrad.nn import functional as F
# Eq. 2 and 3a (one batch's statistics), Eq. 3b and 4 (the population's), and Eq. 4's m/(m-1):
# the library's own functions, the ones the layer runs.
from minigrad.ops.batch_norm import batch_moments, population_statistics, unbiased_variance

QUICK = lesson.options("Lesson 5: population statistics (Eq. 3b, 4)").quick

# %% [markdown]
# ## The features: what a BatchNorm after a first Dense layer would see
# A fixed, randomly initialized Dense(8) on the digits gives 8 features with nonzero means
# and different spreads. We work in float64 so that every comparison is exact to ~1e-12.

# %%
x_train, _, _, _ = mg.data.load_digits(seed=0)
mg.random.manual_seed(0)
dense = mg.nn.Dense(8, dtype="float64")
with mg.no_grad():
    features = dense(mg.Tensor(x_train.astype(np.float64))).numpy()
N = len(features)
print(f"{N} training images -> 8 features; their means {np.round(features.mean(0), 2)}")

# %% [markdown]
# ## Eq. 3b: the mean of the batch means is the mean of the data
# One epoch of mini-batches of m = 60 (shuffled, the last partial batch dropped). Equal
# batches that cover the samples once make E_B[mu_B] the exact mean of those samples.

# %%
m = 60
batches = [x for x, _ in mg.data.Batches(features, np.zeros(N), batch_size=m, seed=0)]
covered = np.concatenate(batches)
batch_means = np.stack([batch_moments(b, (0,))[0][0] for b in batches])      # Eq. 2 per batch
batch_variances = np.stack([batch_moments(b, (0,))[2][0] for b in batches])  # Eq. 3a per batch
population_mean, population_variance = population_statistics(batch_means, batch_variances, m)  # Eq. 3b, 4
print(f"{len(batches)} batches of {m}: largest |E_B[mu_B] - mean of the data| = "
      f"{np.abs(population_mean - covered.mean(0)).max():.1e}")
np.testing.assert_allclose(population_mean, covered.mean(0), rtol=1e-12, atol=1e-12)

# %% [markdown]
# ## Eq. 4: why m/(m-1)
# A batch's variance is measured around the batch's own mean, which sits closer to the
# batch's points than the true mean does, so sigma_B^2 comes out too small on average, by
# exactly the factor (m-1)/m. (Bessel's correction: sigma_B^2 divides by m, but the m
# deviations from mu_B have only m-1 degrees of freedom, since they sum to zero.)
#
# One epoch gives one noisy estimate, so to see the expectation we average over many random
# epochs, for several batch sizes, and compare with the variance of the full data
# (the unbiased one, ddof=1, which is what a random sample's m/(m-1) sigma_B^2 estimates).


# %%
def expected_batch_variance(m, epochs, rng):
    """E_B[sigma_B^2] over `epochs` random partitions into batches of m (drop_last)."""
    per_epoch = []
    for _ in range(epochs):
        order = rng.permutation(N)[: (N // m) * m]
        grouped = features[order].reshape(N // m, m, -1)  # (batches, m, features)
        per_epoch.append(batch_moments(grouped, (1,))[2].mean(axis=0)[0])  # Eq. 3a per batch, averaged
    return np.mean(per_epoch, axis=0)


rng = np.random.default_rng(0)
full_variance = features.var(axis=0, ddof=1)
epochs = 30 if QUICK else 300
tolerance = 0.03 if QUICK else 0.01  # fewer epochs, more noise in the average
print(f"averaged over {epochs} random epochs; ratios are medians over the 8 features")
print(" m    E_B[sigma_B^2] / Var    (m-1)/m    m/(m-1) E_B[sigma_B^2] / Var")
for m in (2, 4, 16, 60):
    biased = expected_batch_variance(m, epochs, rng)
    unbiased = unbiased_variance(biased, m)                                # Eq. 4's m/(m-1)
    biased_ratio, unbiased_ratio = np.median(biased / full_variance), np.median(unbiased / full_variance)
    print(f"{m:3d}    {biased_ratio:.4f}                  {(m - 1) / m:.4f}     {unbiased_ratio:.4f}")
    assert abs(biased_ratio - (m - 1) / m) < tolerance, "the batch variance is short by (m-1)/m"
    assert abs(unbiased_ratio - 1) < tolerance, "Eq. 4 removes the shortfall"

# %% [markdown]
# At m = 60 the bias is under 2%, which is why Keras can ignore it (lesson 6 shows what it
# changes); at m = 2 a batch variance is half the true one on average.
#
# ## The layer keeps Eq. 3b and Eq. 4 with momentum=None
# BatchNorm(momentum=None, unbiased=True) keeps the exact running average of the batch
# means and of the unbiased batch variances: after one epoch its moving statistics are the
# population statistics of that epoch's batches. (PyTorch calls this momentum=None too.)
# It gets there with Eq. 5 and 6 (update_moving_statistics) at a momentum that changes each
# batch, n/(n+1) after n batches (cumulative_momentum), which turns the average of n values
# into the average of n+1; each batch's variance goes in through unbiased_variance.

# %%
m = 60
layer = mg.nn.BatchNorm(momentum=None, unbiased=True, dtype="float64")
for batch in batches:
    layer(mg.Tensor(batch), training=True)
np.testing.assert_allclose(layer.moving_mean.numpy(), population_mean, rtol=1e-12)
np.testing.assert_allclose(layer.moving_variance.numpy(), population_variance, rtol=1e-12)
# and population_statistics is the formula it says, written out here in NumPy:
np.testing.assert_allclose(population_variance, m / (m - 1) * batch_variances.mean(axis=0), rtol=1e-12)
print(f"after {int(layer.num_batches_tracked.item())} batches the layer's moving_mean equals Eq. 3b and "
      f"its moving_variance equals Eq. 4 (to 1e-12)")

# %% [markdown]
# ## Inference with the population statistics
# Now the layer is a fixed affine map, y = gamma (x - E[x]) / sqrt(Var[x] + eps) + beta,
# the same for every example. On the full training data its output has mean about 0 and
# variance about 1, as in training. Its gradient is simpler than in training (no path
# through the statistics); check it on every element, in float64.

# %%
with mg.no_grad():
    y = layer(mg.Tensor(features), training=False).numpy()
print(f"inference output on all {N} images: mean {np.abs(y.mean(0)).max():.3f} at most in size, "
      f"variance between {y.var(0).min():.3f} and {y.var(0).max():.3f}")
assert np.abs(y.mean(0)).max() < 0.05 and np.abs(y.var(0) - 1).max() < 0.05


def inference(x, gamma, beta):
    return F.batch_norm(x, gamma, beta, layer.moving_mean, layer.moving_variance, training=False,
                        epsilon=layer.epsilon)


rng = np.random.default_rng(1)
report = mg.gradcheck(inference, [features[:6], rng.normal(size=8), rng.normal(size=8)],
                      names=["x", "gamma", "beta"], title="inference on the population statistics")
print(report)
assert report.passed
print("So the mean of the batch means is the mean of the data (Eq. 3b), the mean of the batch "
      "variances is too small by (m-1)/m and m/(m-1) corrects it (Eq. 4), and a layer with "
      "momentum=None keeps exactly these.")

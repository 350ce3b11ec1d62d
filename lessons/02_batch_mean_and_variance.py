# %% [markdown]
# # Lesson 2: the batch mean and variance (Eq. 2 and Eq. 3a)
#
#     Eq. 2:  mu_B      = (1/m) sum_i x_i
#     Eq. 3a: sigma_B^2 = (1/m) sum_i (x_i - mu_B)^2      (biased: divide by m, not m - 1)
#
# Lesson 1 took mu and var as given. In training they come from the batch itself, so they
# are functions of x, and the gradient flows through them too. This lesson computes them,
# shows why the variance must be computed from centred values, and checks the derivatives
# of each equation.
#
# Run: python lessons/02_batch_mean_and_variance.py   (a second)

# %%

import numpy as np

import minigrad as mg
from minigrad import lesson
from minigrad.ops.batch_norm import batch_moments, normalize  # Eq. 2 and 3a, and Eq. 1

QUICK = lesson.options("Lesson 2: batch mean and variance (Eq. 2, 3a)").quick

# %% [markdown]
# ## Eq. 2 and 3a on a batch of digits
# `batch_moments(x, axes)` reduces over the batch axis and keeps it as size 1, so that the
# statistics broadcast back against x. The variance divides by m: NumPy's var(ddof=0).

# %%
x_train, _, _, _ = mg.data.load_digits(seed=0)
batch = x_train[:60].astype(np.float64)
m = len(batch)
mean, centred, variance = batch_moments(batch, (0,))
np.testing.assert_allclose(mean[0], batch.mean(axis=0), rtol=1e-12)
np.testing.assert_allclose(variance[0], batch.var(axis=0, ddof=0), rtol=1e-12)
unbiased = batch.var(axis=0, ddof=1)
busy = int(np.argmax(variance[0]))
print(f"pixel {busy}: biased variance {variance[0, busy]:.5f}, unbiased {unbiased[busy]:.5f}, "
      f"ratio {unbiased[busy] / variance[0, busy]:.4f} = m/(m-1) = {m / (m - 1):.4f}")
assert np.isclose(unbiased[busy] / variance[0, busy], m / (m - 1))

# %% [markdown]
# ## Why "from centred values"
# Algebra says sigma^2 = E[x^2] - E[x]^2. Floating point disagrees when the mean is large
# next to the spread: both terms are huge and nearly equal, and their difference loses
# every digit. Keras's NumPy backend computes it that way; minigrad centres first.

# %%
shifted = (batch[:, busy] * 1.0 + 1e4).astype(np.float32)  # the same pixel, offset by 10,000
one_pass = (shifted * shifted).mean() - shifted.mean() ** 2
_, _, two_pass = batch_moments(shifted[:, None], (0,))
truth = shifted.astype(np.float64).var()
print(f"true variance {truth:.5f}; centred (float32) {float(two_pass[0, 0]):.5f}; "
      f"E[x^2]-E[x]^2 (float32) {float(one_pass):.5f}")
assert abs(float(two_pass[0, 0]) - truth) < 1e-3 * truth
assert abs(float(one_pass) - truth) > 0.1 * truth

# %% [markdown]
# ## The derivatives of Eq. 2 and Eq. 3a
#
#     d mu_B / d x_i      = 1/m
#     d sigma_B^2 / d x_i = 2 (x_i - mu_B) / m     (the -2 sum (x_j - mu_B)/m term is 0)
#
# gradcheck compares autograd with central differences on every element, in float64.

# %%
small = batch[:8, 28:31]
for label, pick in [("Eq. 2", 0), ("Eq. 3a", 2)]:
    report = mg.gradcheck(lambda x: batch_moments(x, (0,))[pick], [small], title=label)
    print(report)
    assert report.passed

x = mg.Tensor(small, requires_grad=True)
batch_moments(x, (0,))[0].sum().backward()
np.testing.assert_allclose(x.grad.numpy(), np.full(small.shape, 1 / 8), rtol=1e-12)
x.grad = None
batch_moments(x, (0,))[2].sum().backward()
np.testing.assert_allclose(x.grad.numpy(), 2 * (small - small.mean(0)) / 8, rtol=1e-10, atol=1e-15)
print("autograd equals 1/m for Eq. 2 and 2(x - mu)/m for Eq. 3a")

# %% [markdown]
# ## Eq. 1, 2 and 3a together
# Now mu and var depend on x, so d x_hat / d x is no longer just 1/sqrt(var + eps): moving one
# x_i moves the mean and the variance of its whole batch. gradcheck the composition, first
# and second derivatives.

# %%
def training_transform(x):
    _, centred, variance = batch_moments(x, (0,))
    return normalize(centred, variance, 1e-3)[1]


for check in (mg.gradcheck, mg.gradgradcheck):
    report = check(training_transform, [small])
    print("Eq. 1, 2 and 3a,", report)
    assert report.passed
print("So the batch statistics are functions of x that the gradient flows through, the variance "
      "must come from centred values (E[x^2] - E[x]^2 loses it in float32), and both equations "
      "pass the check to second order.")

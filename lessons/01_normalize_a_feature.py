# %% [markdown]
# # Lesson 1: normalizing a feature (Eq. 1)
#
# Batch Normalization starts with one line, Eq. 1 of the Keras
# BatchNormalization guide (the README summarises its equations):
#
#     x_hat_i = (x_i - mu_B) / sqrt(sigma_B^2 + eps)
#
# Each feature (here: each pixel of an 8x8 digit) is shifted by its batch mean and divided by
# its batch standard deviation, so that it has mean 0 and variance about 1 within the batch.
# This lesson takes real pixels, normalizes them, shows what eps is for, and checks the
# derivatives of Eq. 1 against finite differences.
#
# Run: python lessons/01_normalize_a_feature.py   (a second; --quick changes nothing here)

# %%

import numpy as np

import minigrad as mg
from minigrad import lesson
from minigrad.ops.batch_norm import normalize  # Eq. 1 lives here, once

QUICK = lesson.options("Lesson 1: normalizing a feature (Eq. 1)").quick
EPSILON = 1e-3  # Keras's default

# %% [markdown]
# ## A mini-batch of real pixels
# 60 digits (the batch size of the paper's MNIST experiment), 64 pixels each, in [0, 1].
# Pixels differ a lot: the middle ones vary, the ones at the border are almost always 0.

# %%
x_train, y_train, _, _ = mg.data.load_digits(seed=0)
batch = x_train[:60].astype(np.float64)
mean, variance = batch.mean(axis=0), batch.var(axis=0)
print("pixel means range from", mean.min().round(3), "to", mean.max().round(3))
print("pixel variances range from", variance.min().round(4), "to", variance.max().round(4))

# %% [markdown]
# ## Eq. 1, feature by feature
# `normalize(centred, variance, eps)` returns 1/sqrt(var + eps) and x_hat. After it, every
# pixel that varies has batch mean 0 and batch variance var / (var + eps), which is 1 up to eps.

# %%
inv_std, x_hat = normalize(batch - mean, variance, EPSILON)
print("after Eq. 1: largest |mean|", np.abs(x_hat.mean(axis=0)).max())
expected_variance = variance / (variance + EPSILON)
print("after Eq. 1: variance of a busy pixel", x_hat.var(axis=0)[36].round(4),
      "= var/(var+eps) =", expected_variance[36].round(4))
assert np.abs(x_hat.mean(axis=0)).max() < 1e-12
np.testing.assert_allclose(x_hat.var(axis=0), expected_variance, rtol=1e-12)

# %% [markdown]
# ## What eps is for
# Pixel 0 (the top-left corner) is 0 in every digit: its variance is 0. Without eps, Eq. 1
# divides 0 by 0. With eps it gives 0: a feature that never changes carries no signal.

# %%
constant = int(np.flatnonzero(variance == 0)[0])
with np.errstate(invalid="ignore", divide="ignore"):
    without_eps = (batch[:, constant] - mean[constant]) / np.sqrt(variance[constant])
print(f"pixel {constant}: without eps ->", without_eps[:3], "  with eps ->", x_hat[:3, constant])
assert np.isnan(without_eps).all() and (x_hat[:, constant] == 0).all()

# %% [markdown]
# ## The derivatives of Eq. 1
# Treat mu and var as inputs for now (the next lesson makes them functions of x). Then
#
#     d x_hat / d x   =  1 / sqrt(var + eps)
#     d x_hat / d mu  = -1 / sqrt(var + eps)
#     d x_hat / d var = -(x - mu) / 2 * (var + eps)^(-3/2)
#
# minigrad's autograd differentiates Eq. 1 for us; gradcheck compares that with central
# differences on every element, in float64. We also compare with the formulas above.

# %%
def eq1(x, mu, var):
    return normalize(x - mu, var, EPSILON)[1]


report = mg.gradcheck(eq1, [batch[:6, 30:33], mean[30:33], variance[30:33] + 0.1],
                      names=["x", "mu", "var"], title="Eq. 1")
print(report)
assert report.passed

x = mg.Tensor(batch[:6, 30:33], requires_grad=True)
mu = mg.Tensor(mean[30:33], requires_grad=True)
var = mg.Tensor(variance[30:33] + 0.1, requires_grad=True)
eq1(x, mu, var).sum().backward()
inverse = 1 / np.sqrt(var.numpy() + EPSILON)
np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(inverse, (6, 3)), rtol=1e-12)
np.testing.assert_allclose(mu.grad.numpy(), -6 * inverse, rtol=1e-12)
np.testing.assert_allclose(var.grad.numpy(), (-(x.numpy() - mu.numpy()) / 2 * inverse**3).sum(0), rtol=1e-12)
print("autograd equals the hand-derived formulas for d/dx, d/dmu and d/dvar")
print("So Eq. 1 gives every pixel mean 0 and variance about 1 within the batch, eps keeps a "
      "constant pixel at 0 instead of NaN, and its derivatives are checked element by element.")

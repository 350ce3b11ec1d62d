# %% [markdown]
# # Lesson 3: scale and offset (gamma and beta)
#
#     y_i = gamma * x_hat_i + beta
#
# Normalizing forces every feature to mean 0 and variance 1. That is a constraint on what
# the next layer can see: a sigmoid fed only values near 0 is stuck in its linear middle.
# gamma and beta, learned per feature, give the freedom back. In particular, with
# gamma = sqrt(var + eps) and beta = mu the layer is the identity: BatchNorm can always
# undo itself if that is what the loss wants. This lesson shows that, and checks the
# derivatives of the scale and offset.
#
# Run: python lessons/03_scale_and_offset.py   (a second)

# %%

import numpy as np

import minigrad as mg
from minigrad import lesson
from minigrad.ops.batch_norm import scale_and_shift  # y = gamma x_hat + beta lives here

QUICK = lesson.options("Lesson 3: scale and offset").quick

# %% [markdown]
# ## Without gamma and beta, a sigmoid only sees its linear middle
# After normalization almost every value is within +-2, where the sigmoid is nearly a
# straight line. Measure how far sigmoid(x_hat) is from its tangent at 0, 0.5 + x/4.

# %%
x_train, _, _, _ = mg.data.load_digits(seed=0)
batch = x_train[:60].astype(np.float64)
features = batch[:, batch.var(axis=0) > 0.05]  # the busy pixels
layer = mg.nn.BatchNorm(center=False, scale=False, dtype="float64")
x_hat = layer(mg.Tensor(features), training=True)
values = x_hat.numpy()
inside = np.abs(values) < 2
gap = np.abs(x_hat.sigmoid().numpy() - (0.5 + values / 4))[inside].max()
print(f"{inside.mean():.0%} of normalized values lie in [-2, 2]; there the sigmoid stays within "
      f"{gap:.3f} of its tangent line, against 0.5 at its flat tails")
assert inside.mean() > 0.9 and gap < 0.125

# %% [markdown]
# ## With gamma = sqrt(var + eps) and beta = mu, BatchNorm is the identity

# %%
layer = mg.nn.BatchNorm(dtype="float64")
layer.build(features.shape)
layer.gamma.data[...] = np.sqrt(features.var(axis=0) + layer.epsilon)
layer.beta.data[...] = features.mean(axis=0)
y = layer(mg.Tensor(features), training=True)
print("largest |y - x| with the identity's gamma and beta:", np.abs(y.numpy() - features).max())
np.testing.assert_allclose(y.numpy(), features, atol=1e-12)

# %% [markdown]
# ## The derivatives of the scale and offset
#
#     dl/dx_hat_i = dl/dy_i * gamma      dl/dgamma = sum_i dl/dy_i x_hat_i      dl/dbeta = sum_i dl/dy_i
#
# gamma and beta have one value per feature, broadcast over the batch, so their gradients
# sum over the batch. gradcheck on every element, then the formulas by hand.

# %%
rng = np.random.default_rng(0)
x_hat_values, gamma_values, beta_values = rng.normal(size=(5, 3)), rng.normal(size=3), rng.normal(size=3)
report = mg.gradcheck(scale_and_shift, [x_hat_values, gamma_values, beta_values],
                      names=["x_hat", "gamma", "beta"], title="scale and offset")
print(report)
assert report.passed

x_hat_t = mg.Tensor(x_hat_values, requires_grad=True)
gamma = mg.Tensor(gamma_values, requires_grad=True)
beta = mg.Tensor(beta_values, requires_grad=True)
upstream = rng.normal(size=(5, 3))
scale_and_shift(x_hat_t, gamma, beta).backward(upstream)
np.testing.assert_allclose(x_hat_t.grad.numpy(), upstream * gamma_values, rtol=1e-12)
np.testing.assert_allclose(gamma.grad.numpy(), (upstream * x_hat_values).sum(0), rtol=1e-12)
np.testing.assert_allclose(beta.grad.numpy(), upstream.sum(0), rtol=1e-12)
print("autograd equals the formulas for dl/dx_hat, dl/dgamma and dl/dbeta")
print("So gamma and beta give back the freedom that normalizing took away: with gamma = "
      "sqrt(var + eps) and beta = mu the layer is the identity, and their derivatives are "
      "checked.")

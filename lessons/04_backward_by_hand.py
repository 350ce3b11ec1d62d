# %% [markdown]
# # Lesson 4: the paper's backward pass, written out
#
# Autograd differentiates Eq. 1, 2 and 3a for free. The paper (Ioffe and Szegedy, Section 3) writes
# the same derivatives by hand, l the loss and dl/dy given:
#
#     dl/dx_hat_i = dl/dy_i * gamma
#     dl/dvar     = sum_i dl/dx_hat_i (x_i - mu) (-1/2) (var + eps)^(-3/2)
#     dl/dmu      = sum_i dl/dx_hat_i (-1/sqrt(var + eps)) + dl/dvar * sum_i -2 (x_i - mu) / m
#     dl/dx_i     = dl/dx_hat_i / sqrt(var + eps) + dl/dvar 2 (x_i - mu)/m + dl/dmu / m
#     dl/dgamma   = sum_i dl/dy_i x_hat_i
#     dl/dbeta    = sum_i dl/dy_i
#
# We compute each line in NumPy, compare every intermediate with what autograd finds on the
# composite graph, compare the result with minigrad's closed form and with finite
# differences, check that the fast kernels the layer trains with give the same training step,
# and then look at second derivatives, where a common shortcut goes wrong.
#
# Run: python lessons/04_backward_by_hand.py   (a few seconds)

# %%

import numpy as np

import minigrad as mg
from minigrad import lesson
from minigrad.nn import functional as F
from minigrad.ops.batch_norm import batch_moments, closed_form_backward, normalize, scale_and_shift

QUICK = lesson.options("Lesson 4: the paper's backward pass").quick
EPSILON = 1e-3

# %% [markdown]
# ## A batch, weights, and an upstream gradient dl/dy

# %%
x_train, _, _, _ = mg.data.load_digits(seed=0)
x = x_train[:16, 20:24].astype(np.float64)  # 16 digits, 4 pixels
m = len(x)
rng = np.random.default_rng(0)
gamma, beta = 1.0 + 0.5 * rng.normal(size=4), rng.normal(size=4)
dl_dy = rng.normal(size=x.shape)

# %% [markdown]
# ## The six equations, in NumPy

# %%
mu, var = x.mean(0), x.var(0)
x_hat = (x - mu) / np.sqrt(var + EPSILON)
dl_dx_hat = dl_dy * gamma
dl_dvar = (dl_dx_hat * (x - mu) * -0.5 * (var + EPSILON) ** -1.5).sum(0)
dl_dmu = (dl_dx_hat * -1 / np.sqrt(var + EPSILON)).sum(0) + dl_dvar * (-2 * (x - mu)).sum(0) / m
dl_dx = dl_dx_hat / np.sqrt(var + EPSILON) + dl_dvar * 2 * (x - mu) / m + dl_dmu / m
dl_dgamma = (dl_dy * x_hat).sum(0)
dl_dbeta = dl_dy.sum(0)

# %% [markdown]
# ## Autograd on the composite graph finds every intermediate
# mg.grad returns the gradient of any tensor of the graph, not only of leaves: ask it for
# x_hat, var and mu themselves.

# %%
x_t, gamma_t, beta_t = (mg.Tensor(a, requires_grad=True) for a in (x, gamma, beta))
mean_t, centred_t, variance_t = batch_moments(x_t, (0,))
_, x_hat_t = normalize(centred_t, variance_t, EPSILON)
y_t = scale_and_shift(x_hat_t, gamma_t, beta_t)
found = mg.grad(y_t, [x_hat_t, variance_t, mean_t, x_t, gamma_t, beta_t], mg.Tensor(dl_dy))
# dl/dmu here is the total derivative through mu, including its path through var; the paper's
# dl/dmu is the same quantity (its second term is that path).
names = ["dl/dx_hat", "dl/dvar", "dl/dmu", "dl/dx", "dl/dgamma", "dl/dbeta"]
by_hand = [dl_dx_hat, dl_dvar, dl_dmu, dl_dx, dl_dgamma, dl_dbeta]
for name, ours, theirs in zip(names, by_hand, found):
    difference = np.abs(ours - theirs.numpy().reshape(ours.shape)).max()
    print(f"{name:10s} by hand vs autograd: max |difference| {difference:.1e}")
    assert difference < 1e-10

# %% [markdown]
# ## minigrad's closed form is these equations
# With `mg.nn.batch_norm_form("closed_form")`, BatchNorm trains with the reference equations:
# `BatchNormClosedForm` in minigrad/ops/batch_norm.py, whose backward is `closed_form_backward`,
# the six lines above. Its gradients must equal the hand computation, and finite differences.

# %%
with mg.nn.batch_norm_form("closed_form"):
    closed = mg.grad(F.batch_norm(x_t, gamma_t, beta_t, epsilon=EPSILON), [x_t, gamma_t, beta_t], mg.Tensor(dl_dy))
for name, ours, theirs in zip(["dl/dx", "dl/dgamma", "dl/dbeta"], [dl_dx, dl_dgamma, dl_dbeta], closed):
    np.testing.assert_allclose(theirs.numpy(), ours, rtol=1e-10, atol=1e-12)
print("the closed form's dl/dx, dl/dgamma, dl/dbeta equal the hand computation")
report = mg.gradcheck(lambda a, g, b: F.batch_norm(a, g, b, epsilon=EPSILON, form="closed_form"), [x, gamma, beta],
                      names=["x", "gamma", "beta"], title="closed form vs finite differences")
print(report)
assert report.passed

# %% [markdown]
# ## The fast kernels train the same way
# By default the layer runs `BatchNormFast` (minigrad/ops/batch_norm_fast.py): the same
# equations rearranged to pass over memory fewer times. With dl/dvar and dl/dmu substituted
# into dl/dx (the dl/dmu term's sum of x - mu is zero), dl/dx becomes
#
#     dl/dx_i = gamma / sqrt(var + eps) * (dl/dy_i - mean(dl/dy) - x_hat_i * mean(dl/dy * x_hat))
#
# One training step of the paper's network, once with the fast kernels and once with the
# reference equations (the switch), from the same weights and batch: the weights after the
# step must agree to rounding.

# %%
data = mg.data.load_digits(seed=0)


def one_step(form):
    mg.manual_seed(0)
    model = mg.training.paper_mlp("relu", batch_norm=True)
    model.build((None, 64))
    optimizer = mg.optim.SGD(model.parameters(), learning_rate=0.5)
    with mg.nn.batch_norm_form(form):
        loss = F.softmax_cross_entropy(model(mg.Tensor(data[0][:60]), training=True), data[1][:60])
        loss.backward()
    optimizer.step()
    return loss.item(), model.state_dict()


(fast_loss, fast_state), (reference_loss, reference_state) = one_step("fast"), one_step("closed_form")
largest = max(float(np.abs(fast_state[k].astype(np.float64) - reference_state[k]).max()) for k in fast_state)
print(f"one SGD step: loss {fast_loss:.6f} with the fast kernels, {reference_loss:.6f} with the reference "
      f"equations; largest difference in any weight or moving statistic afterwards {largest:.1e} (float32)")
assert largest < 1e-5
print("So the fast kernels and the paper's equations give the same training step: the speed-up "
      "changes the order of the arithmetic, not the result.")

# %% [markdown]
# ## Second derivatives, and the shortcut that breaks them
# A closed form can save 1/sqrt(var + eps) and x_hat from the forward pass and reuse them as
# numbers. First derivatives stay right. But when we differentiate the backward pass itself
# (create_graph=True: a gradient penalty, a Hessian-vector product), those numbers are
# functions of x, and treating them as constants drops terms. minigrad recomputes them in the
# graph when create_graph=True. gradgradcheck shows both. To see the shortcut fail, we write
# it as our own Function (as lesson 0 did for softplus): forward saves the constants, and
# backward feeds them to the same closed_form_backward.

# %%
fn = lambda a, g, b: F.batch_norm(a, g, b, epsilon=EPSILON)  # noqa: E731
right = mg.gradgradcheck(fn, [x[:6], gamma, beta], names=["x", "gamma", "beta"], title="minigrad's BatchNorm, twice")
print(right)
assert right.passed


class SavedConstantsBatchNorm(mg.Function):
    """x_hat of a (batch, features) input, whose backward reuses the forward's numbers."""

    def forward(self, a):
        _, self.centred, variance = batch_moments(a, (0,))
        self.inv_std, self.x_hat = normalize(self.centred, variance, EPSILON)
        return self.x_hat

    def backward(self, grad):
        # Constant tensors: the engine sees no path from them back to x, so the terms of the
        # second derivative through mu and var are lost.
        saved = [mg.Tensor(value) for value in (self.centred, self.inv_std, self.x_hat)]
        return closed_form_backward(grad, None, *saved, (0,), False, False)


shortcut = lambda a, g, b: scale_and_shift(SavedConstantsBatchNorm().apply(a), g, b)  # noqa: E731
first = mg.gradcheck(shortcut, [x[:6], gamma, beta], raise_on_failure=False)
wrong = mg.gradgradcheck(shortcut, [x[:6], gamma, beta], names=["x", "gamma", "beta"], raise_on_failure=False)
print(f"with the saved constants: first derivatives pass={first.passed}, second derivatives "
      f"pass={wrong.passed} (largest error {wrong.max_abs_error:.2e})")
assert first.passed and not wrong.passed
print("That second-order failure is the expected, intended result: it is the bug this section "
      "exists to show. Saved constants give right first derivatives and wrong second ones, which "
      "is why minigrad's backward recomputes the statistics in the graph under create_graph=True.")

# %% [markdown]
# # Lesson 0: the engine, opened up
#
# Before we build Batch Normalization, meet the engine it is built on, in micrograd's spirit.
# A Tensor remembers the operation that made it. backward() walks those records from the
# loss back to the inputs, and each operation turns the gradient of its output into
# gradients of its inputs. We will:
#   1. build a small graph and print its nodes in the order backward() needs them;
#   2. see gradients add up when a value is used twice;
#   3. write a new operation (softplus) with its forward beside its backward;
#   4. check it against finite differences, to first and second order, then break its
#      backward on purpose and watch the check catch it;
#   5. train softmax regression on real digits with nothing but these pieces.
#
# Run: python lessons/00_engine_tour.py          (a few seconds)
#      python lessons/00_engine_tour.py --quick  (a second or two)

# %%
import numpy as np

import minigrad as mg
from minigrad import lesson

QUICK = lesson.options("Lesson 0: the engine, opened up").quick

# %% [markdown]
# ## 1. A graph, in topological order
# loss = (a * b + c).relu() * f. Every result knows its `grad_fn`, the Function node that
# made it; a leaf (a tensor you created) has none. backward() needs each node after
# everything that uses it: mg.topological_order lists the graph inputs first, the loss last,
# and backward() runs down that list in reverse.

# %%
a = mg.Tensor(2.0, requires_grad=True, dtype="float64")
b = mg.Tensor(-3.0, requires_grad=True, dtype="float64")
c = mg.Tensor(10.0, requires_grad=True, dtype="float64")
f = mg.Tensor(-2.0, requires_grad=True, dtype="float64")
e = a * b
d = e + c
r = d.relu()
loss = r * f
names = {id(t): name for name, t in dict(a=a, b=b, c=c, f=f, e=e, d=d, r=r, loss=loss).items()}
for node in mg.topological_order(loss):
    made_by = "a leaf" if node.grad_fn is None else f"made by {type(node.grad_fn).__name__} of " + ", ".join(
        names[id(t)] for t in node.grad_fn.inputs)
    print(f"  {names[id(node)]:4s} = {node.item():6.1f}   {made_by}")
loss.backward()
print("dloss/da, dloss/db, dloss/dc, dloss/df =", [t.grad.item() for t in (a, b, c, f)])
# By the chain rule: dloss/da = f * relu'(d) * b = -2 * 1 * -3 = 6, and so on.
assert [t.grad.item() for t in (a, b, c, f)] == [6.0, -4.0, -2.0, 4.0]

# %% [markdown]
# ## 2. A value used twice gets the sum of both paths' gradients
# In y = x * x + x, x feeds the multiplication (twice) and the addition. Each use sends a
# gradient back, and the engine adds them: dy/dx = x + x + 1 = 2x + 1. An engine that
# overwrote instead of adding would report only one path.

# %%
x = mg.Tensor([1.0, -2.0, 3.0], requires_grad=True, dtype="float64")
y = (x * x + x).sum()
y.backward()
print(f"x = {x.numpy()}, dy/dx = {x.grad.numpy()}, 2x + 1 = {2 * x.numpy() + 1}")
assert np.array_equal(x.grad.numpy(), 2 * x.numpy() + 1)
print("Gradients also accumulate across backward() calls, until you reset them (x.grad = None).")

# %% [markdown]
# ## 3. A new operation: softplus(x) = log(1 + e^x), a smooth ReLU
# A Function has a forward on arrays (NumPy or CuPy) and a backward in Tensor operations,
# side by side. d softplus / dx = sigmoid(x). Because backward is written with Tensors, the
# engine can differentiate the backward itself, which gives second derivatives for free.


# %%
class Softplus(mg.Function):
    def forward(self, x):
        return np.logaddexp(0.0, x)  # log(e^0 + e^x), with no overflow for large x

    def backward(self, grad):
        (x,) = self.inputs
        return (grad * x.sigmoid(),)  # d/dx log(1 + e^x) = e^x / (1 + e^x) = sigmoid(x)


def softplus(x):
    return Softplus().apply(x)


points = np.linspace(-4.0, 4.0, 9)
print("softplus on -4..4:", np.round(softplus(mg.Tensor(points)).numpy(), 3))

# %% [markdown]
# ## 4. Check it, then break it
# gradcheck moves every input element by +-eps in float64 and compares the finite difference
# with backward(); gradgradcheck does the same for the gradient itself.

# %%
print(mg.gradcheck(softplus, [points], names=["x"], title="softplus, first derivatives"))
print(mg.gradgradcheck(softplus, [points], names=["x"], title="softplus, second derivatives"))


class BrokenSoftplus(Softplus):
    def backward(self, grad):
        (x,) = self.inputs
        return (grad * (1.0 - x.sigmoid()),)  # a slip: sigmoid(-x), the derivative of softplus(-x)


broken = mg.gradcheck(lambda t: BrokenSoftplus().apply(t), [points], names=["x"],
                      title="softplus with a broken backward", raise_on_failure=False)
print(broken)
assert not broken.passed
print("The broken backward fails the check, as intended: that failure is the check doing its job. "
      "Every operation in minigrad passes this test, in float64, on every element.")

# %% [markdown]
# ## 5. Softmax regression on real digits
# The 1,797 8x8 digits that ship with scikit-learn (no download), pixels scaled to 0..1, and a
# fixed stratified split. One Dense layer written by hand: logits = x @ W + b.

# %%
x_train, y_train, x_test, y_test = mg.data.load_digits(seed=0)
print(f"train {x_train.shape}, test {x_test.shape}, classes {np.unique(y_train).size}")

# %% [markdown]
# ## The loss: softmax cross-entropy through log-sum-exp
# For logits z and label y: loss = log(sum_j exp(z_j)) - z_y. Subtracting max(z) before exp
# changes nothing mathematically and keeps exp from overflowing.


# %%
def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of integer labels, stable through log-sum-exp."""
    top = logits.max(axis=1, keepdims=True)
    log_sum_exp = (logits - top).exp().sum(axis=1).log() + top.reshape(-1)
    picked = logits[np.arange(len(labels)), labels]  # each row's label logit
    return (log_sum_exp - picked).mean()


# %% [markdown]
# ## Check the derivative before trusting it
# gradcheck moves every element of every input by +-eps in float64 and compares the finite
# difference with backward(). The table shows the largest error for each input.

# %%
rng = np.random.default_rng(0)
report = mg.gradcheck(
    lambda x, w, b: cross_entropy(x @ w + b, y_train[:6]),
    [x_train[:6].astype(np.float64), rng.standard_normal((64, 10)) * 0.1, np.zeros(10)],
    names=["x", "W", "b"],
)
print(report)
assert report.passed

# %% [markdown]
# ## Train with plain minibatch gradient descent

# %%
mg.manual_seed(0)
W = (mg.randn(64, 10) * 0.01).requires_grad_()
b = mg.zeros(10, requires_grad=True)
learning_rate, batch_size = 0.5, 64
steps = 150 if QUICK else 1500
order_rng = np.random.default_rng(0)


def accuracy(x, y):
    with mg.no_grad():
        return float(((mg.Tensor(x) @ W + b).argmax(axis=1).numpy() == y).mean())


losses = []
for step in range(1, steps + 1):
    batch = order_rng.choice(len(x_train), batch_size, replace=False)
    loss = cross_entropy(mg.Tensor(x_train[batch]) @ W + b, y_train[batch])
    W.grad = b.grad = None
    loss.backward()
    with mg.no_grad():
        W.data -= learning_rate * W.grad.data
        b.data -= learning_rate * b.grad.data
    losses.append(loss.item())
    if step % (steps // 5) == 0:
        print(f"step {step:5d}  loss {loss.item():.4f}  test accuracy {accuracy(x_test, y_test):.3f}")

# %% [markdown]
# ## What we claim, asserted
# The loss falls, and a linear model already reads most digits correctly.

# %%
final_accuracy = accuracy(x_test, y_test)
print(f"first loss {losses[0]:.3f} -> last loss {losses[-1]:.3f}; test accuracy {final_accuracy:.3f}")
assert losses[-1] < losses[0] / 2, "the loss should at least halve"
assert final_accuracy > (0.85 if QUICK else 0.93), f"test accuracy {final_accuracy:.3f} is too low"
print("So a graph of a few tensor operations, differentiated by one backward() and checked against "
      "finite differences, already reads most digits. Every lesson after this builds BatchNorm on "
      "the same engine, one equation at a time.")

# %% [markdown]
# # Lesson 0: the engine, in one training run
#
# Before we build Batch Normalization, meet the engine it is built on. We train a softmax
# regression (one Dense layer written by hand) on real handwritten digits, using nothing but
# minigrad tensors: @ for the layer, max/exp/log/sum for a numerically stable softmax
# cross-entropy, integer indexing to pick each example's label logit, and backward() for
# the gradients. Along the way we gradient-check the loss against finite differences.
#
# Run: python lessons/00_engine_tour.py          (about ten seconds)
#      python lessons/00_engine_tour.py --quick  (a second or two)

# %%
import argparse
import os
import sys

import numpy as np

import minigrad as mg

parser = argparse.ArgumentParser(description="Lesson 0: softmax regression on digits")
parser.add_argument("--quick", action="store_true", help="a short run (also MINIGRAD_QUICK=1)")
args = parser.parse_args()
QUICK = args.quick or os.environ.get("MINIGRAD_QUICK") == "1"

# %% [markdown]
# ## The data: 1,797 real 8x8 digits that ship with scikit-learn (no download)
# Pixels go from 0..16 to 0..1. We hold out a fixed, stratified quarter for testing.

# %%
try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
except ImportError:
    sys.exit("this lesson needs scikit-learn: pip install -e '.[lessons]'")

digits = load_digits()
x_train, x_test, y_train, y_test = train_test_split(
    digits.data / 16.0, digits.target, test_size=0.25, random_state=0, stratify=digits.target
)
x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
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

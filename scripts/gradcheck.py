"""Gradient-check every equation of the seed and of the paper's backward pass, in float64.

    python scripts/gradcheck.py

Prints one table (equation, what is checked, max abs error, max rel error, pass/fail) and exits
non-zero if any row fails. Rows labelled "Eq. N" are the seed's equations; the others name
the paper's step or the layer. Eq. 3 (population), 4, 5 and 6 are statistics that training
never differentiates: their rows compare the statistics with their formulas, and check the
inference-mode gradient built on them.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minigrad as mg  # noqa: E402
from minigrad.nn import functional as F  # noqa: E402
from minigrad.ops.batch_norm import batch_moments, normalize, scale_and_shift  # noqa: E402

EPSILON = 1e-3
AXES = (0,)  # a (batch, features) input: statistics over the batch axis
rng = np.random.default_rng(0)
X = rng.normal(size=(6, 3)) * 2.0 + 1.0
GAMMA, BETA = 1.0 + 0.3 * rng.normal(size=3), rng.normal(size=3)
LABELS = np.array([0, 2, 1, 2, 0, 1])


def gradient_row(label, what, fn, inputs, second_order=False):
    check = mg.gradgradcheck if second_order else mg.gradcheck
    report = check(fn, inputs, raise_on_failure=False)
    return label, what, report.max_abs_error, report.max_rel_error, report.passed


def formula_row(label, what, got, expected, rtol=1e-12):
    error = np.abs(np.asarray(got) - np.asarray(expected))
    relative = error / np.maximum(np.abs(expected), 1e-300)
    return label, what, float(error.max()), float(relative.max()), bool((error <= rtol * np.abs(expected) + 1e-15).all())


def population_statistics(batches, unbiased, momentum):
    layer = mg.nn.BatchNorm(momentum=momentum, epsilon=EPSILON, unbiased=unbiased, dtype="float64")
    for batch in batches:
        layer(mg.Tensor(batch), training=True)
    return layer


def inference_fn(layer):
    def fn(x, gamma, beta):
        return F.batch_norm(x, gamma, beta, layer.moving_mean, layer.moving_variance,
                            training=False, epsilon=EPSILON)
    return fn


def rows():
    yield gradient_row("Eq. 2", "batch mean mu_B: d/dx", lambda x: batch_moments(x, AXES)[0], [X])
    yield gradient_row("Eq. 3", "biased batch variance sigma_B^2: d/dx", lambda x: batch_moments(x, AXES)[2], [X])
    yield gradient_row("Eq. 1", "x_hat = (x - mu)/sqrt(var + eps): d/dx, d/dmu, d/dvar",
                       lambda x, mu, var: normalize(x - mu, var, EPSILON)[1],
                       [X, X.mean(0), X.var(0) + 0.5])
    yield gradient_row("scale and shift", "y = gamma x_hat + beta: d/dx_hat, d/dgamma, d/dbeta",
                       scale_and_shift, [normalize(X - X.mean(0), X.var(0), EPSILON)[1], GAMMA, BETA])
    train = lambda form: lambda x, g, b: F.batch_norm(x, g, b, epsilon=EPSILON, form=form)  # noqa: E731
    yield gradient_row("paper backward", "closed form dl/dx_hat..dl/dbeta: dl/dx, dl/dgamma, dl/dbeta",
                       train("closed_form"), [X, GAMMA, BETA])
    yield gradient_row("paper backward", "closed form, second derivatives (create_graph)",
                       train("closed_form"), [X, GAMMA, BETA], second_order=True)
    yield gradient_row("Eq. 1-3 composite", "engine-differentiated training transform",
                       train("composite"), [X, GAMMA, BETA])
    yield gradient_row("Eq. 1-3 composite", "second derivatives", train("composite"), [X, GAMMA, BETA],
                       second_order=True)

    batches = [rng.normal(size=(8, 3)) * (i + 1) + i for i in range(5)]
    m = 8
    exact = population_statistics(batches, unbiased=True, momentum=None)
    yield formula_row("Eq. 3 (population)", "E[x] = E_B[mu_B] after 5 batches",
                      exact.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0))
    yield formula_row("Eq. 4", "Var[x] = m/(m-1) E_B[sigma_B^2] after 5 batches",
                      exact.moving_variance.numpy(), m / (m - 1) * np.mean([b.var(0) for b in batches], 0))
    yield gradient_row("Eq. 3-4 inference", "y on the population statistics: d/dx, d/dgamma, d/dbeta",
                       inference_fn(exact), [X, GAMMA, BETA])
    keras = population_statistics(batches, unbiased=False, momentum=0.9)
    expected_mean, expected_variance = np.zeros(3), np.ones(3)
    for b in batches:
        expected_mean = expected_mean * 0.9 + b.mean(0) * 0.1
        expected_variance = expected_variance * 0.9 + b.var(0) * 0.1
    yield formula_row("Eq. 5", "moving mean = moving*momentum + mu_B*(1-momentum)",
                      keras.moving_mean.numpy(), expected_mean)
    yield formula_row("Eq. 6", "moving var = moving*momentum + sigma_B^2*(1-momentum)",
                      keras.moving_variance.numpy(), expected_variance)
    yield gradient_row("Eq. 5-6 inference", "y on the moving statistics: d/dx, d/dgamma, d/dbeta",
                       inference_fn(keras), [X, GAMMA, BETA])
    yield gradient_row("Eq. 5-6 inference", "second derivatives", inference_fn(keras), [X, GAMMA, BETA],
                       second_order=True)

    yield gradient_row("Dense", "x @ kernel + bias: d/dx, d/dkernel, d/dbias", F.dense,
                       [X, rng.normal(size=(3, 4)), rng.normal(size=4)])
    yield gradient_row("ReLU", "max(x, 0) (x kept off 0)", F.relu, [X + np.where(X >= 0, 0.1, -0.1)])
    yield gradient_row("softmax cross-entropy", "mean -log softmax(z)[label]: d/dlogits",
                       F.softmax_cross_entropy, [rng.normal(size=(6, 3)) * 3, LABELS])
    yield sgd_row()


def sgd_row():
    """SGD's step follows the gradient: loss(theta - lr g) = loss(theta) - lr |g|^2 + O(lr^2)."""
    model = mg.nn.Sequential(mg.nn.Dense(4, dtype="float64"), mg.nn.BatchNorm(dtype="float64"),
                             mg.nn.ReLU(), mg.nn.Dense(3, dtype="float64"))
    model.build(X.shape)

    def loss():
        return F.softmax_cross_entropy(model(mg.Tensor(X), training=True), LABELS)

    before = loss()
    before.backward()
    squared_norm = sum(float((p.grad.data ** 2).sum()) for p in model.parameters())
    absolute, relative = [], []
    for lr in (1e-4, 1e-5):  # the O(lr^2) remainder shrinks 100x when lr shrinks 10x
        saved = model.state_dict()
        mg.optim.SGD(model.parameters(), lr=lr).step()
        predicted, actual = lr * squared_norm, before.item() - loss().item()
        absolute.append(abs(actual - predicted))
        relative.append(abs(actual - predicted) / predicted)
        model.load_state_dict(saved)
    passed = relative[1] < 1e-3 and relative[1] < relative[0] / 5
    return ("SGD", "theta - lr*g lowers the loss by lr*|g|^2 to first order",
            absolute[1], relative[1], passed)


def main() -> int:
    table = list(rows())
    header = ("equation", "what is checked", "max abs error", "max rel error", "result")
    lines = [(e, w, f"{a:.2e}", f"{r:.2e}", "pass" if p else "FAIL") for e, w, a, r, p in table]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    for line in [header, *lines]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
    failed = [row for row in table if not row[4]]
    print(f"\n{len(table) - len(failed)} of {len(table)} rows pass (float64; gradient rows pass if "
          "|analytic - numeric| <= 1e-5 + 1e-3 |numeric| on every element)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

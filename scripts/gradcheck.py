"""Check every BatchNorm implementation and every equation it is built from, in float64.

    python scripts/gradcheck.py

Prints one table (label, what is checked, max abs error, max rel error, pass/fail) and exits
non-zero if any row fails.

Numbering: a row labelled "Eq. N" checks that equation of the Keras BatchNormalization guide.
The guide numbers two equations "Eq. 3"; here Eq. 3a is the biased batch variance
sigma_B^2 = (1/m) sum (x - mu_B)^2 and Eq. 3b the population mean E[x] = E_B[mu_B].

Two kinds of row. A gradient row runs gradcheck (or gradgradcheck, "second derivatives") on a
function: its analytic derivatives against finite differences of that same function. It
cannot see an error in the forward itself (a y off by 1% has derivatives off by 1% too, and
the check compares them with each other), so a value row ("vs NumPy") compares each output
with the formula written out in NumPy in this script.

    Eq. 2, Eq. 3a, Eq. 1, scale and shift   the reference functions (minigrad/ops/batch_norm.py)
    composite, closed form, fast kernels    the implementations F.batch_norm(form=...) runs:
                                            "composite", "closed_form", "fast" (the default).
                                            Each, on a 2-D and a 4-D axis=1 input: y and the
                                            batch statistics vs NumPy; dl/dx, dl/dgamma, dl/dbeta
                                            vs NumPy, without and with create_graph; and
                                            gradcheck and gradgradcheck. form="fast" with
                                            create_graph runs closed_form_backward in the graph
                                            (BatchNormFunction.backward_in_graph), so those rows
                                            are labelled "closed form".
    Eq. 3b, Eq. 4                           population_statistics, and the layer's
                                            momentum=None running form, vs NumPy
    Eq. 5, Eq. 6                            the moving averages of a BatchNorm layer vs NumPy
    inference, Eq. 3b-4 / 5-6 inference     Eq. 1 on those statistics: value and derivatives
    renorm                                  Batch Renormalization: r and d, the output and the
                                            five updates vs NumPy, clipped and not; the
                                            transform's derivatives with r and d constant, and
                                            the layer's with r and d pinned by clipping
    masked statistics                       Keras's mask: statistics of the unmasked positions
                                            vs NumPy; derivatives
    track_running_stats=False inference     inference on the batch's own statistics
    Conv2D                                  conv2d vs loops in NumPy, valid and same (TF
                                            padding), strides 1 and 2; first and second
                                            derivatives in x and the kernel
    BatchNorm on images                     axis=-1 on conv features (N, H, W, C), m = N*H*W
    Dense, ReLU, softmax cross-entropy, SGD the layers and the optimizer around BatchNorm

Each function is looked up on its module when its row runs (reference.normalize, not a copy
imported at the start), so that tests/test_gradcheck_script.py can replace one with a version
that is 1% off and see the script fail, on the row that names it.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minigrad as mg  # noqa: E402
from minigrad.nn import functional as F  # noqa: E402
from minigrad.ops import batch_norm as reference  # noqa: E402

EPSILON = 1e-3
AXES = (0,)  # a (batch, features) input: statistics over the batch axis
X = np.random.default_rng(0).normal(size=(6, 3)) * 2.0 + 1.0
GAMMA, BETA = 1.0 + 0.3 * np.random.default_rng(1).normal(size=3), np.random.default_rng(2).normal(size=3)
LABELS = np.array([0, 2, 1, 2, 0, 1])
# The value rows' inputs, 3 features each: X, and a 4-D one normalized along axis 1 (N, C, H, W).
VALUE_CASES = [(X, -1), (np.random.default_rng(3).normal(size=(4, 3, 2, 2)) * 3.0 - 2.0, 1)]
FORMS = [("composite", "composite"), ("closed form", "closed_form"), ("fast kernels", "fast")]


def gradient_row(label, what, fn, inputs, second_order=False):
    check = mg.gradgradcheck if second_order else mg.gradcheck
    report = check(fn, inputs, raise_on_failure=False)
    return label, what, report.max_abs_error, report.max_rel_error, report.passed


def value_row(label, what, got, expected, rtol=1e-10, atol=1e-12):
    """got against expected (lists of arrays, compared pairwise); pass within rtol and atol."""
    got = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in got])
    expected = np.concatenate([np.asarray(e, dtype=np.float64).ravel() for e in expected])
    error = np.abs(got - expected)
    relative = error / np.maximum(np.abs(expected), 1e-300)
    return label, what, float(error.max()), float(relative.max()), bool((error <= rtol * np.abs(expected) + atol).all())


# ---- The formulas in plain NumPy ---------------------------------------------------------------

def numpy_normalize(x, axis):
    """(axes reduced, per-channel broadcast shape, batch mean, biased batch variance, x_hat)."""
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    shape = [n if i not in axes else 1 for i, n in enumerate(x.shape)]
    mean = x.mean(axis=axes)
    variance = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)
    x_hat = (x - mean.reshape(shape)) / np.sqrt(variance.reshape(shape) + EPSILON)
    return axes, shape, mean, variance, x_hat


def numpy_batch_norm(x, gamma, beta, axis):
    """(y, batch mean, biased batch variance) of the training transform, written out."""
    _, shape, mean, variance, x_hat = numpy_normalize(x, axis)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), mean, variance


def form_forward(form, x, axis):
    """F.batch_norm's (y, batch mean, batch variance) by `form`. At momentum 0 the moving
    statistics become the batch's own, so they show what the form computed."""
    moving_mean, moving_variance = mg.zeros(3, dtype="float64"), mg.ones(3, dtype="float64")
    y = F.batch_norm(mg.Tensor(x), mg.Tensor(GAMMA), mg.Tensor(BETA), moving_mean, moving_variance,
                     axis=axis, momentum=0.0, epsilon=EPSILON, form=form)
    return y.numpy(), moving_mean.numpy(), moving_variance.numpy()


def numpy_batch_norm_backward(x, gamma, g, axis):
    """(dl/dx, dl/dgamma, dl/dbeta) for upstream gradient g = dl/dy, the paper's backward
    with dl/dvar and dl/dmu substituted, written out."""
    axes, shape, _, variance, x_hat = numpy_normalize(x, axis)
    m = x.size // x.shape[axis]
    inv_std = 1 / np.sqrt(variance.reshape(shape) + EPSILON)
    sum_g, sum_g_x_hat = g.sum(axis=axes, keepdims=True), (g * x_hat).sum(axis=axes, keepdims=True)
    d_x = gamma.reshape(shape) * inv_std / m * (m * g - sum_g - x_hat * sum_g_x_hat)
    return d_x, sum_g_x_hat.ravel(), sum_g.ravel()


def form_gradients(form, x, axis, g, create_graph):
    """mg.grad of sum(g * y) for F.batch_norm(form=form): (dl/dx, dl/dgamma, dl/dbeta)."""
    inputs = [mg.Tensor(a, requires_grad=True) for a in (x, GAMMA, BETA)]
    y = F.batch_norm(*inputs, axis=axis, epsilon=EPSILON, form=form)
    return [d.numpy() for d in mg.grad(y, inputs, mg.Tensor(g), create_graph=create_graph)]


def form_rows(label, form):
    outputs = [form_forward(form, x, axis) for x, axis in VALUE_CASES]
    expected = [numpy_batch_norm(x, GAMMA, BETA, axis) for x, axis in VALUE_CASES]
    yield value_row(label, "forward y = gamma (x - mean)/sqrt(var + eps) + beta vs NumPy",
                    [o[0] for o in outputs], [e[0] for e in expected])
    yield value_row(label, "batch mean and biased variance it returns vs NumPy",
                    [s for o in outputs for s in o[1:]], [s for e in expected for s in e[1:]])
    # form="fast" with create_graph=True runs closed_form_backward in the graph (backward_in_graph).
    in_graph = ("closed form", ", run by closed_form_backward") if form == "fast" else (label, "")
    upstream = [np.random.default_rng(5).normal(size=x.shape) for x, _ in VALUE_CASES]
    expected = [d for (x, axis), g in zip(VALUE_CASES, upstream)
                for d in numpy_batch_norm_backward(x, GAMMA, g, axis)]
    for row_label, create_graph, runs in ((label, False, ""), (in_graph[0], True, in_graph[1])):
        got = [d for (x, axis), g in zip(VALUE_CASES, upstream)
               for d in form_gradients(form, x, axis, g, create_graph)]
        graph = " with create_graph" if create_graph else ""
        # The second-derivative rows cannot see an error in these first derivatives, only
        # whether their own derivatives match them; this row checks the values themselves.
        yield value_row(row_label, f"form={form!r} dl/dx, dl/dgamma, dl/dbeta{graph}{runs} vs NumPy",
                        got, expected)
    # Gradient rows on both inputs: the 4-D one reduces over three axes, so a backward that
    # counts m from the first axis alone (right in 2-D) fails there.
    for x, axis in VALUE_CASES:
        train = lambda x, g, b, axis=axis: F.batch_norm(x, g, b, axis=axis, epsilon=EPSILON, form=form)  # noqa: E731
        shape = "x.shape=" + "x".join(map(str, x.shape))
        yield gradient_row(label, f"form={form!r} first derivatives ({shape}): dl/dx, dl/dgamma, dl/dbeta",
                           train, [x, GAMMA, BETA])
        yield gradient_row(in_graph[0], f"form={form!r} second derivatives ({shape}, create_graph){in_graph[1]}",
                           train, [x, GAMMA, BETA], second_order=True)


# ---- The rows ----------------------------------------------------------------------------------

def equation_rows():
    """Eq. 2, 3a, 1 and the scale and shift: the reference functions, values and derivatives."""
    mean, _, variance = reference.batch_moments(X, AXES)
    yield value_row("Eq. 2", "batch_moments: mu_B = (1/m) sum x_i vs NumPy", [mean], [X.sum(0) / len(X)])
    yield gradient_row("Eq. 2", "batch mean mu_B: d/dx", lambda x: reference.batch_moments(x, AXES)[0], [X])
    yield value_row("Eq. 3a", "batch_moments: sigma_B^2 = (1/m) sum (x_i - mu_B)^2 vs NumPy", [variance],
                    [((X - X.mean(0)) ** 2).sum(0) / len(X)])
    yield gradient_row("Eq. 3a", "biased batch variance sigma_B^2: d/dx",
                       lambda x: reference.batch_moments(x, AXES)[2], [X])
    mu, var = X.mean(0), X.var(0) + 0.5
    inv_std, x_hat = reference.normalize(X - mu, var, EPSILON)
    yield value_row("Eq. 1", "normalize: 1/sqrt(var + eps) and x_hat = (x - mu)/sqrt(var + eps) vs NumPy",
                    [inv_std, x_hat], [1 / np.sqrt(var + EPSILON), (X - mu) / np.sqrt(var + EPSILON)])
    yield gradient_row("Eq. 1", "x_hat: d/dx, d/dmu, d/dvar",
                       lambda x, mu, var: reference.normalize(x - mu, var, EPSILON)[1], [X, mu, var])
    x_hat = (X - mu) / np.sqrt(var + EPSILON)
    yield value_row("scale and shift", "scale_and_shift: y = gamma x_hat + beta vs NumPy",
                    [reference.scale_and_shift(x_hat, GAMMA, BETA)], [GAMMA * x_hat + BETA])
    yield gradient_row("scale and shift", "y = gamma x_hat + beta: d/dx_hat, d/dgamma, d/dbeta",
                       lambda *a: reference.scale_and_shift(*a), [x_hat, GAMMA, BETA])


def trained_layer(batches, unbiased, momentum):
    layer = mg.nn.BatchNorm(momentum=momentum, epsilon=EPSILON, unbiased=unbiased, dtype="float64")
    for batch in batches:
        layer(mg.Tensor(batch), training=True)
    return layer


def inference_rows(label, layer):
    """Eq. 1 on the layer's stored statistics: y vs NumPy, and the derivatives."""
    mean, variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()

    def fn(x, gamma, beta):
        return F.batch_norm(x, gamma, beta, layer.moving_mean, layer.moving_variance,
                            training=False, epsilon=EPSILON)

    yield value_row("inference", f"y = gamma (x - mean)/sqrt(var + eps) + beta on the {label} statistics vs NumPy",
                    [fn(mg.Tensor(X), mg.Tensor(GAMMA), mg.Tensor(BETA)).numpy()],
                    [GAMMA * (X - mean) / np.sqrt(variance + EPSILON) + BETA])
    yield gradient_row(f"{label} inference", "y: d/dx, d/dgamma, d/dbeta", fn, [X, GAMMA, BETA])
    if label == "Eq. 5-6":
        yield gradient_row(f"{label} inference", "second derivatives", fn, [X, GAMMA, BETA], second_order=True)


def statistics_rows(rng):
    """Eq. 3b and 4 (population), Eq. 5 and 6 (moving averages), and inference on them."""
    batches = [rng.normal(size=(8, 3)) * (i + 1) + i for i in range(5)]
    m = 8
    means, variances = np.stack([b.mean(0) for b in batches]), np.stack([b.var(0) for b in batches])
    population_mean = sum(b.mean(0) for b in batches) / len(batches)
    population_variance = m / (m - 1) * sum(((b - b.mean(0)) ** 2).sum(0) / m for b in batches) / len(batches)
    mean, variance = reference.population_statistics(means, variances, m)
    yield value_row("Eq. 3b", "population_statistics: E[x] = E_B[mu_B] vs NumPy", [mean], [population_mean])
    yield value_row("Eq. 4", "population_statistics: Var[x] = m/(m-1) E_B[sigma_B^2] vs NumPy",
                    [variance], [population_variance])
    exact = trained_layer(batches, unbiased=True, momentum=None)
    yield value_row("Eq. 3b", "BatchNorm(momentum=None) moving mean after 5 batches vs NumPy",
                    [exact.moving_mean.numpy()], [population_mean])
    yield value_row("Eq. 4", "BatchNorm(momentum=None, unbiased=True) moving variance vs NumPy",
                    [exact.moving_variance.numpy()], [population_variance])
    yield from inference_rows("Eq. 3b-4", exact)

    keras = trained_layer(batches, unbiased=False, momentum=0.9)
    expected_mean, expected_variance = np.zeros(3), np.ones(3)
    for b in batches:
        expected_mean = expected_mean * 0.9 + b.mean(0) * 0.1
        expected_variance = expected_variance * 0.9 + b.var(0) * 0.1
    yield value_row("Eq. 5", "moving mean = moving*momentum + mu_B*(1-momentum) vs NumPy",
                    [keras.moving_mean.numpy()], [expected_mean])
    yield value_row("Eq. 6", "moving var = moving*momentum + sigma_B^2*(1-momentum) vs NumPy",
                    [keras.moving_variance.numpy()], [expected_variance])
    yield from inference_rows("Eq. 5-6", keras)


# ---- Keras 3's renorm and masks, PyTorch's track_running_stats=False -----------------------------

RENORM_MEAN, RENORM_STDDEV = np.array([0.5, -0.3, 1.5]), np.array([1.0, 3.5, 0.8])
CLIPPING = dict(rmax=1.5, rmin=0.5, dmax=0.4)


def numpy_renorm(x, moving_mean, moving_stddev, clipping, momentum=0.9, renorm_momentum=0.8):
    """Batch Renormalization's training step on a (batch, features) x, written out: (r, d, y
    with gamma and beta, and the new renorm_mean, renorm_stddev, moving_mean, moving_stddev,
    moving_variance)."""
    mean, stddev = x.mean(0), np.sqrt(x.var(0) + EPSILON)
    guarded = np.maximum(RENORM_STDDEV, np.sqrt(EPSILON))
    r = np.clip(stddev / guarded, clipping.get("rmin", -np.inf), clipping.get("rmax", np.inf))
    d = np.clip((mean - RENORM_MEAN) / guarded, -clipping.get("dmax", np.inf), clipping.get("dmax", np.inf))
    y = GAMMA * ((x - mean) / stddev * r + d) + BETA
    new_moving_stddev = moving_stddev * momentum + stddev * (1 - momentum)
    return (r, d, y, RENORM_MEAN * renorm_momentum + mean * (1 - renorm_momentum),
            RENORM_STDDEV * renorm_momentum + stddev * (1 - renorm_momentum),
            moving_mean * momentum + mean * (1 - momentum), new_moving_stddev,
            np.maximum(new_moving_stddev ** 2 - EPSILON, 0))


def renorm_layer(clipping):
    layer = mg.nn.BatchNorm(renorm=True, renorm_clipping=clipping, momentum=0.9, renorm_momentum=0.8,
                            epsilon=EPSILON, dtype="float64")
    layer.build(X.shape)
    layer.gamma.data[...], layer.beta.data[...] = GAMMA, BETA
    layer.renorm_mean.data[...], layer.renorm_stddev.data[...] = RENORM_MEAN, RENORM_STDDEV
    layer.moving_mean.data[...], layer.moving_stddev.data[...] = 0.2, 1.3
    return layer


def renorm_rows():
    """r and d, the output and the five updates vs NumPy; derivatives with r and d constant."""
    for clipping, how in ((CLIPPING, "clipped"), ({}, "unclipped")):
        expected = numpy_renorm(X, np.full(3, 0.2), np.full(3, 1.3), clipping)
        r, d = reference.renorm_correction(X.mean(0), X.var(0), RENORM_MEAN, RENORM_STDDEV, EPSILON, clipping)
        yield value_row("renorm", f"r = sigma_B/renorm_stddev, d = (mu_B - renorm_mean)/renorm_stddev, {how}, "
                        "vs NumPy", [r, d], expected[:2])
        layer = renorm_layer(clipping)
        y = layer(mg.Tensor(X), training=True).numpy()
        yield value_row("renorm", f"BatchNorm(renorm=True) y = gamma (x_hat r + d) + beta, {how}, vs NumPy",
                        [y], [expected[2]])
        got = [getattr(layer, n).numpy() for n in ("renorm_mean", "renorm_stddev", "moving_mean",
                                                     "moving_stddev", "moving_variance")]
        yield value_row("renorm", f"renorm_mean, renorm_stddev, moving_mean, moving_stddev, moving_variance "
                        f"after the step, {how}, vs NumPy", got, expected[3:])
    r, d = reference.renorm_correction(X.mean(0), X.var(0), RENORM_MEAN, RENORM_STDDEV, EPSILON, {})
    transform = lambda x_hat, g, b: reference.renorm_transform(x_hat, g, b, r, d)  # noqa: E731
    x_hat = (X - X.mean(0)) / np.sqrt(X.var(0) + EPSILON)
    yield gradient_row("renorm", "renorm_transform (r, d constant): d/dx_hat, d/dgamma, d/dbeta",
                       transform, [x_hat, GAMMA, BETA])
    yield gradient_row("renorm", "renorm_transform (r, d constant): second derivatives",
                       transform, [x_hat, GAMMA, BETA], second_order=True)
    # The whole layer, with r and d held at their clipping bounds (renorm_stddev far below
    # the batch's, renorm_mean far off its mean), so that finite differences see them constant.
    # track_running_stats=False stops the updates, so every call sees the same state.
    pinned = renorm_layer(CLIPPING)
    pinned.renorm_stddev.data[...], pinned.renorm_mean.data[...] = 0.1, -10.0
    pinned.track_running_stats = False

    def through_layer(x, g, b):
        pinned.gamma, pinned.beta = g, b
        return pinned(x, training=True)

    yield gradient_row("renorm", "BatchNorm(renorm=True), r and d pinned by clipping: d/dx, d/dgamma, d/dbeta",
                       through_layer, [X, GAMMA, BETA])
    yield gradient_row("renorm", "BatchNorm(renorm=True), r and d pinned by clipping: second derivatives",
                       through_layer, [X, GAMMA, BETA], second_order=True)


MASKED_X = np.random.default_rng(6).normal(size=(4, 5, 3)) * 2.0 + 1.0
MASK = np.random.default_rng(7).random((4, 5)) < 0.6


def masked_rows():
    """Eq. 2 and 3a over the unmasked positions (Keras's count + 1e-7), vs NumPy; derivatives."""
    kept = MASKED_X[MASK]
    count = MASK.sum() + reference.MASK_EPSILON
    mean = kept.sum(0) / count
    variance = ((kept - mean) ** 2).sum(0) / count
    moving_mean, moving_variance = mg.zeros(3, dtype="float64"), mg.ones(3, dtype="float64")
    y = F.batch_norm(mg.Tensor(MASKED_X), mg.Tensor(GAMMA), mg.Tensor(BETA), moving_mean, moving_variance,
                     momentum=0.0, epsilon=EPSILON, mask=MASK)
    yield value_row("masked statistics", "mean and variance of the unmasked positions (count + 1e-7) vs NumPy",
                    [moving_mean.numpy(), moving_variance.numpy()], [mean, variance])
    yield value_row("masked statistics", "y: every position normalized with them vs NumPy",
                    [y.numpy()], [GAMMA * (MASKED_X - mean) / np.sqrt(variance + EPSILON) + BETA])
    fn = lambda x, g, b: F.batch_norm(x, g, b, epsilon=EPSILON, mask=MASK)  # noqa: E731
    yield gradient_row("masked statistics", "d/dx, d/dgamma, d/dbeta", fn, [MASKED_X, GAMMA, BETA])
    yield gradient_row("masked statistics", "second derivatives", fn, [MASKED_X, GAMMA, BETA], second_order=True)


def batch_statistics_inference_rows():
    """track_running_stats=False: inference normalizes with the batch's own statistics."""
    layer = mg.nn.BatchNorm(track_running_stats=False, epsilon=EPSILON, dtype="float64")
    layer.build(X.shape)

    def fn(x, g, b):
        layer.gamma, layer.beta = g, b
        return layer(x, training=False)

    y = numpy_batch_norm(X, GAMMA, BETA, -1)[0]
    yield value_row("track_running_stats=False inference", "y with the batch's mean and variance vs NumPy",
                    [fn(mg.Tensor(X), mg.Tensor(GAMMA), mg.Tensor(BETA)).numpy()], [y])
    yield gradient_row("track_running_stats=False inference", "d/dx, d/dgamma, d/dbeta", fn, [X, GAMMA, BETA])
    yield gradient_row("track_running_stats=False inference", "second derivatives", fn, [X, GAMMA, BETA],
                       second_order=True)


# ---- Convolutions, and BatchNorm on their (N, H, W, C) feature maps --------------------------

IMAGES = np.random.default_rng(8).normal(size=(2, 5, 6, 2))
KERNEL = np.random.default_rng(9).normal(size=(3, 2, 2, 3))  # (kh, kw, in, out): even and odd
CONV_CASES = [(1, "valid"), (2, "same")]  # (stride, padding)


def numpy_conv2d(x, kernel, stride, padding):
    """Eq. 1 of minigrad.ops.conv written as loops over output pixels, with TensorFlow's padding."""
    kh, kw = kernel.shape[:2]
    pads = []
    for size, k in ((x.shape[1], kh), (x.shape[2], kw)):
        total = max((-(-size // stride) - 1) * stride + k - size, 0) if padding == "same" else 0
        pads.append((total // 2, total - total // 2))
    x = np.pad(x, ((0, 0), *pads, (0, 0)))
    out_h, out_w = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            y[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return y


def conv_rows():
    """Conv2D: y vs loops in NumPy; first and second derivatives in x and the kernel. Then
    BatchNorm over conv features (N, H, W, C): one statistic per channel over m = N*H*W."""
    for stride, padding in CONV_CASES:
        fn = lambda x, k, stride=stride, padding=padding: F.conv2d(x, k, strides=stride, padding=padding)  # noqa: E731
        what = f"stride {stride}, {padding}"
        yield value_row("Conv2D", f"conv2d y ({what}, 3x2 kernel) vs NumPy loops",
                        [fn(mg.Tensor(IMAGES), mg.Tensor(KERNEL)).numpy()],
                        [numpy_conv2d(IMAGES, KERNEL, stride, padding)])
        yield gradient_row("Conv2D", f"conv2d ({what}): d/dx, d/dkernel", fn, [IMAGES, KERNEL])
        yield gradient_row("Conv2D", f"conv2d ({what}): second derivatives", fn, [IMAGES, KERNEL],
                           second_order=True)
    features = numpy_conv2d(IMAGES, KERNEL, 1, "same")  # (2, 5, 6, 3): 3 channels, m = 60
    gamma, beta = GAMMA, BETA
    expected = numpy_batch_norm(features, gamma, beta, -1)
    yield value_row("BatchNorm on images", "axis=-1 on (N, H, W, C): y and per-channel mean, variance "
                    "over m = N*H*W vs NumPy", list(form_forward("fast", features, -1)), list(expected))
    train = lambda x, g, b: F.batch_norm(x, g, b, axis=-1, epsilon=EPSILON)  # noqa: E731
    yield gradient_row("BatchNorm on images", "axis=-1 on (N, H, W, C): d/dx, d/dgamma, d/dbeta", train,
                       [features, gamma, beta])
    yield gradient_row("BatchNorm on images", "axis=-1 on (N, H, W, C): second derivatives", train,
                       [features, gamma, beta], second_order=True)


def rows():
    rng = np.random.default_rng(4)  # made here, so every call of rows() sees the same values
    yield from equation_rows()
    for label, form in FORMS:
        yield from form_rows(label, form)
    yield from statistics_rows(rng)
    yield from renorm_rows()
    yield from masked_rows()
    yield from batch_statistics_inference_rows()
    yield from conv_rows()
    yield gradient_row("Dense", "x @ kernel + bias: d/dx, d/dkernel, d/dbias", F.dense,
                       [X, rng.normal(size=(3, 4)), rng.normal(size=4)])
    yield gradient_row("ReLU", "max(x, 0) (x kept off 0)", F.relu, [X + np.where(X >= 0, 0.1, -0.1)])
    yield gradient_row("softmax cross-entropy", "mean -log softmax(z)[label]: d/dlogits",
                       F.softmax_cross_entropy, [rng.normal(size=(6, 3)) * 3, LABELS])
    yield sgd_row()


def sgd_row():
    """SGD's step follows the gradient: loss(theta - lr g) = loss(theta) - lr |g|^2 + O(lr^2)."""
    mg.manual_seed(0)
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
    header = ("label", "what is checked", "max abs error", "max rel error", "result")
    lines = [(e, w, f"{a:.2e}", f"{r:.2e}", "pass" if p else "FAIL") for e, w, a, r, p in table]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    for line in [header, *lines]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
    failed = [row for row in table if not row[4]]
    print(f"\n{len(table) - len(failed)} of {len(table)} rows pass (float64; gradient rows pass if "
          "|analytic - numeric| <= 1e-5 + 1e-3 |numeric| on every element, value rows if "
          "|value - NumPy| <= 1e-12 + 1e-10 |NumPy|)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""First and second derivatives of the layers and losses, in float64 on every element, per backend.

Each layer is checked through the module itself: the function under test puts the
gradcheck's float64 copies of the weights into the layer and calls it.
"""

import numpy as np
import pytest

import minigrad as mg
from conftest import normal
from minigrad.nn import functional as F
from minigrad.ops import batch_norm as ops_bn

LABELS = np.array([2, 0, 1, 2, 1])


def through_layer(layer, weight_names, training=None):
    """fn(x, *weights) that calls `layer` with those weights; checks the backend and dtype."""

    def fn(x, *weights):
        for name, weight in zip(weight_names, weights):
            setattr(layer, name, weight)
        out = layer(x, training=training)
        assert out.dtype == np.float64 and out.backend == x.backend
        return out

    return fn


def batch_norm_layer(shape, axis, center, scale, training, seed=0):
    """A float64 BatchNorm built for `shape`, with non-trivial weights and moving statistics."""
    layer = mg.nn.BatchNorm(axis=axis, center=center, scale=scale, dtype="float64")
    layer.build(shape)
    features = shape[axis]
    rng = np.random.default_rng(seed)
    layer.moving_mean.data[...] = mg.Tensor(rng.normal(size=features)).data
    layer.moving_variance.data[...] = mg.Tensor(rng.uniform(0.5, 2.0, size=features)).data
    names = [n for n, on in (("gamma", scale), ("beta", center)) if on]
    weights = [1.0 + 0.5 * normal(features, seed + 1) if n == "gamma" else normal(features, seed + 2)
               for n in names]
    return through_layer(layer, names, training), weights, names


BN_SHAPES = [((6, 3), -1), ((2, 3, 2, 2), 1), ((2, 2, 2, 3), -1)]
BN_CASES = [
    pytest.param(shape, axis, center, scale, training,
                 id=f"{'train' if training else 'infer'}-{shape}-axis{axis}-center{center}-scale{scale}")
    for shape, axis in BN_SHAPES
    for training in (True, False)
    for center, scale in ((True, True), (False, False), (True, False), (False, True))
]


@pytest.mark.parametrize("shape, axis, center, scale, training", BN_CASES)
def test_batch_norm_gradcheck(backend, shape, axis, center, scale, training):
    fn, weights, names = batch_norm_layer(shape, axis, center, scale, training)
    report = mg.gradcheck(fn, [normal(shape, 3), *weights], names=["x", *names])
    assert report.passed and report.max_abs_error < 1e-6, str(report)


@pytest.mark.parametrize("shape, axis, center, scale, training", BN_CASES)
def test_batch_norm_gradgradcheck(backend, shape, axis, center, scale, training):
    fn, weights, names = batch_norm_layer(shape, axis, center, scale, training)
    report = mg.gradgradcheck(fn, [normal(shape, 3), *weights], names=["x", *names])
    assert report.passed and report.max_abs_error < 1e-6, str(report)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3)])
def test_dense_gradcheck_and_gradgradcheck(backend, shape, use_bias):
    layer = mg.nn.Dense(2, use_bias=use_bias, dtype="float64")
    layer.build(shape)
    names = ["kernel", "bias"] if use_bias else ["kernel"]
    fn = through_layer(layer, names)
    inputs = [normal(shape), normal((3, 2), 1)] + ([normal(2, 2)] if use_bias else [])
    for check in (mg.gradcheck, mg.gradgradcheck):
        report = check(fn, inputs, names=["x", *names])
        assert report.passed and report.max_abs_error < 1e-6, str(report)


@pytest.mark.parametrize("layer", [mg.nn.ReLU, mg.nn.Sigmoid])
def test_activation_layer_gradcheck_and_gradgradcheck(backend, layer):
    fn = through_layer(layer(), [])
    for check in (mg.gradcheck, mg.gradgradcheck):
        report = check(lambda x: fn(x) ** 2, [normal((3, 4), away_from_zero=True)])
        assert report.passed and report.max_abs_error < 1e-6, str(report)


def test_softmax_cross_entropy_gradcheck_and_gradgradcheck(backend):
    for check in (mg.gradcheck, mg.gradgradcheck):
        report = check(F.softmax_cross_entropy, [normal((5, 3)) * 3.0, LABELS])
        assert report.passed and report.max_abs_error < 1e-6, str(report)


def test_mse_gradcheck_and_gradgradcheck(backend):
    for check in (mg.gradcheck, mg.gradgradcheck):
        report = check(F.mse, [normal((4, 2)), normal((4, 2), 1)])
        assert report.passed and report.max_abs_error < 1e-6, str(report)


def test_a_model_gradchecks_end_to_end(backend):
    # Dense -> BatchNorm -> ReLU -> Dense -> loss, in training mode, all weights checked.
    mg.manual_seed(0)
    model = mg.nn.Sequential(
        mg.nn.Dense(4, use_bias=False, dtype="float64"), mg.nn.BatchNorm(dtype="float64"),
        mg.nn.ReLU(), mg.nn.Dense(3, dtype="float64"),
    )
    model.build((5, 3))
    names = [name for name, _ in model.named_parameters()]

    def loss(x, *weights):
        for name, weight in zip(names, weights):
            index, attribute = name.split(".")
            setattr(model[int(index)], attribute, weight)
        return F.softmax_cross_entropy(model(x), LABELS)

    report = mg.gradcheck(loss, [normal((5, 3)), *[w.numpy().astype(np.float64) for w in model.parameters()]],
                          names=["x", *names])
    assert report.passed and report.max_abs_error < 1e-6, str(report)


# ---- the fast kernels, the closed form and the composite form agree --------------------------

@pytest.mark.parametrize("shape, axis", [((7, 3), -1), ((2, 3, 4, 2), 1), ((3, 2, 2, 4), -1)])
@pytest.mark.parametrize("center, scale", [(True, True), (False, False), (True, False)])
def test_every_form_equals_composite_to_second_order(backend, shape, axis, center, scale):
    features = shape[axis]
    x = mg.Tensor(normal(shape, 1) * 2.0 + 0.5, requires_grad=True)
    gamma = mg.Tensor(1.0 + 0.3 * normal(features, 2), requires_grad=True) if scale else None
    beta = mg.Tensor(normal(features, 3), requires_grad=True) if center else None
    weights = [w for w in (x, gamma, beta) if w is not None]
    upstream = mg.Tensor(normal(shape, 4))
    probe = [mg.Tensor(normal(w.shape, 5 + i)) for i, w in enumerate(weights)]

    results = {}
    for form in F.BATCH_NORM_FORMS:
        y = F.batch_norm(x, gamma, beta, axis=axis, form=form)
        first = mg.grad(y, weights, upstream, create_graph=True)
        # A second derivative: the gradient of <probe, first derivatives> w.r.t. every input.
        # beta enters linearly, so its second derivative is unused: None, compared as 0.
        second = mg.grad(sum((p * g).sum() for p, g in zip(probe, first)), weights,
                         allow_unused=True)
        second = [np.zeros(w.shape) if g is None else g.numpy() for w, g in zip(weights, second)]
        results[form] = [y.numpy()] + [g.numpy() for g in first] + second
    for form in ("fast", "closed_form"):
        for ours, composite in zip(results[form], results["composite"]):
            np.testing.assert_allclose(ours, composite, rtol=1e-10, atol=1e-12, err_msg=form)


@pytest.mark.parametrize("form", ["fast", "closed_form"])
def test_saved_array_backward_matches_the_create_graph_one(backend, form):
    # The saved-array path (no create_graph) and the recomputing path give the same gradients.
    x = mg.Tensor(normal((6, 4)), requires_grad=True)
    gamma = mg.Tensor(1.0 + normal(4, 1) * 0.2, requires_grad=True)
    upstream = mg.Tensor(normal((6, 4), 2))
    plain = mg.grad(F.batch_norm(x, gamma, axis=-1, form=form), [x, gamma], upstream)
    graphed = mg.grad(F.batch_norm(x, gamma, axis=-1, form=form), [x, gamma], upstream, create_graph=True)
    for a, b in zip(plain, graphed):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)


class SavedConstantsBatchNorm(mg.Function):
    """x_hat of a (batch, features) input, written as a user writes their own Function, with
    the shortcut the paper's closed form tempts one to take: backward reuses the forward's
    x - mu, 1/sqrt(var + eps) and x_hat as constant Tensors, even under create_graph."""

    axes = (0,)
    epsilon = 1e-3

    def forward(self, x):
        _, self.centred, variance = ops_bn.batch_moments(x, self.axes)
        self.inv_std, self.x_hat = ops_bn.normalize(self.centred, variance, self.epsilon)
        return self.x_hat

    def backward(self, grad):
        # The engine sees no path from these constants back to x: the terms of the second
        # derivative through mu and var are lost.
        saved = [mg.Tensor(a) for a in (self.centred, self.inv_std, self.x_hat)]
        return ops_bn.closed_form_backward(grad, None, *saved, self.axes, False, False)


def test_a_backward_on_saved_constants_fails_gradgradcheck(backend):
    fn = lambda x: SavedConstantsBatchNorm().apply(x)  # noqa: E731
    x = normal((5, 2))
    np.testing.assert_allclose(fn(mg.Tensor(x)).numpy(), F.batch_norm(mg.Tensor(x), axis=-1).numpy(),
                               rtol=1e-12, atol=1e-14)
    assert mg.gradcheck(fn, [x]).passed
    report = mg.gradgradcheck(fn, [x], raise_on_failure=False)
    assert not report.passed
    # minigrad's forms recompute them in the graph when create_graph=True, and pass.
    for form in F.BATCH_NORM_FORMS:
        assert mg.gradgradcheck(lambda x: F.batch_norm(x, axis=-1, form=form), [x]).passed, form

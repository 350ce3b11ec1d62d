"""The fast BatchNorm kernels (minigrad.ops.batch_norm_fast) agree with the reference formulas
they restate (minigrad.ops.batch_norm), on both backends."""

import numpy as np
import pytest

import minigrad as mg
from minigrad.ops import batch_norm as reference, batch_norm_fast as fast

CASES = [((6, 3), 1), ((5, 4, 3), 0), ((2, 3, 4, 5), 1), ((2, 4, 3, 3), 3)]


def arrays(shape, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * 3 + 2).astype(dtype)


def plain(x, gamma, beta, feature_axis, epsilon):
    """The reference's batch_moments, normalize and scale_and_shift: the formulas as written."""
    axes = tuple(i for i in range(x.ndim) if i != feature_axis)
    mean, centred, variance = reference.batch_moments(x, axes)
    inv_std, x_hat = reference.normalize(centred, variance, epsilon)
    return reference.scale_and_shift(x_hat, gamma, beta), mean, variance, centred, inv_std, x_hat, axes


def broadcast(values, shape, feature_axis):
    return values.reshape([n if i == feature_axis else 1 for i, n in enumerate(shape)])


@pytest.mark.parametrize("shape, feature_axis", CASES)
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, True), (False, False)])
def test_fast_forward_equals_the_plain_formulas(backend, shape, feature_axis, affine):
    xp = mg.backend.module(backend)
    x = xp.asarray(arrays(shape))
    channels = shape[feature_axis]
    gamma = xp.asarray(broadcast(arrays(channels, 1), shape, feature_axis)) if affine[0] else None
    beta = xp.asarray(broadcast(arrays(channels, 2), shape, feature_axis)) if affine[1] else None
    y, centred, mean, variance, inv_std = fast.fast_forward(x, gamma, beta, feature_axis, 1e-3)
    y_plain, mean_plain, variance_plain, centred_plain, inv_std_plain, _, _ = plain(
        x, gamma, beta, feature_axis, 1e-3)
    xp.testing.assert_allclose(y, y_plain, rtol=1e-12, atol=1e-12)
    xp.testing.assert_allclose(mean.ravel(), mean_plain.ravel(), rtol=1e-12)
    xp.testing.assert_allclose(variance.ravel(), variance_plain.ravel(), rtol=1e-12)
    xp.testing.assert_allclose(inv_std.ravel(), inv_std_plain.ravel(), rtol=1e-12)
    xp.testing.assert_allclose(centred.reshape(shape), centred_plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, feature_axis", CASES)
@pytest.mark.parametrize("with_gamma", [True, False])
def test_fast_backward_equals_the_papers_closed_form(backend, shape, feature_axis, with_gamma):
    xp = mg.backend.module(backend)
    x, grad = xp.asarray(arrays(shape)), xp.asarray(arrays(shape, 3))
    gamma = xp.asarray(broadcast(arrays(shape[feature_axis], 1), shape, feature_axis)) if with_gamma else None
    _, _, _, centred, inv_std, x_hat, axes = plain(x, gamma, None, feature_axis, 1e-3)
    expected = reference.closed_form_backward(grad, gamma, centred, inv_std, x_hat, axes, True, True)
    _, centred_3, _, _, inv_std_3 = fast.fast_forward(x, gamma, None, feature_axis, 1e-3)
    d_x, d_gamma, d_beta = fast.fast_backward(grad, centred_3, inv_std_3, gamma, feature_axis)
    xp.testing.assert_allclose(d_x, expected[0], rtol=1e-10, atol=1e-12)
    xp.testing.assert_allclose(d_gamma.ravel(), expected[1].ravel(), rtol=1e-10, atol=1e-12)
    xp.testing.assert_allclose(d_beta.ravel(), expected[2].ravel(), rtol=1e-10, atol=1e-12)


def test_the_small_kernels_equal_their_formulas(backend):
    xp = mg.backend.module(backend)
    a, b = xp.asarray(arrays((4, 3, 5))), xp.asarray(arrays((4, 3, 5), 1))
    column = xp.asarray(arrays((1, 3, 1), 2))
    xp.testing.assert_allclose(fast.channel_sum(a), a.sum(axis=(0, 2), keepdims=True), rtol=1e-12)
    xp.testing.assert_allclose(fast.channel_sum(a, b), (a * b).sum(axis=(0, 2), keepdims=True), rtol=1e-12)
    xp.testing.assert_allclose(fast.shift_and_scale(a, column, column + 1), a * column + column + 1, rtol=1e-12)
    xp.testing.assert_allclose(fast.shift_and_scale(a, column, None), a * column, rtol=1e-12)
    k, mean_g, q = column, column - 1, column * 2
    xp.testing.assert_allclose(fast.input_gradient(a, b, k, mean_g, q), k * (a - mean_g - b * q), rtol=1e-12)


def test_the_fast_kernels_keep_float32(backend):
    xp = mg.backend.module(backend)
    x, grad = xp.asarray(arrays((8, 4), dtype=np.float32)), xp.asarray(arrays((8, 4), 1, np.float32))
    gamma = xp.ones((1, 4), np.float32)
    y, centred, mean, variance, inv_std = fast.fast_forward(x, gamma, gamma, 1, 1e-3)
    grads = fast.fast_backward(grad, centred, inv_std, gamma, 1)
    assert {a.dtype for a in (y, centred, mean, variance, inv_std, *grads)} == {np.dtype(np.float32)}


def test_fast_forward_does_not_touch_its_input(backend):
    xp = mg.backend.module(backend)
    x = xp.asarray(arrays((5, 3)))
    before = x.copy()
    y, *_ = fast.fast_forward(x, None, None, 1, 1e-3)
    xp.testing.assert_array_equal(x, before)
    assert not xp.shares_memory(x, y)


def test_layer_training_step_takes_the_fast_path_and_create_graph_the_differentiable_one(backend, monkeypatch):
    calls = []
    original = fast.fast_backward
    monkeypatch.setattr(fast, "fast_backward", lambda *a, **k: calls.append(1) or original(*a, **k))
    x = mg.Tensor(arrays((6, 3)), requires_grad=True)
    layer = mg.nn.BatchNorm(dtype="float64")
    (layer(x, training=True) ** 2).sum().backward()
    assert calls == [1]
    x.grad = None
    (layer(x, training=True) ** 2).sum().backward(create_graph=True)
    assert calls == [1], "create_graph=True must not use the first-order kernel"
    assert x.grad.requires_grad


def test_the_last_backward_may_reuse_the_saved_centred_array_and_a_retained_one_may_not(backend):
    x_values = arrays((6, 3))
    upstream = mg.Tensor(arrays((6, 3), 1))
    expected = None
    for retain in (True, False):
        x = mg.Tensor(x_values, requires_grad=True)
        y = mg.nn.functional.batch_norm(x, training=True)
        y.backward(upstream, retain_graph=retain)
        if retain:  # a second pass through the retained graph must see the saved arrays intact
            first = x.grad.numpy().copy()
            x.grad = None
            y.backward(upstream)
            np.testing.assert_allclose(x.grad.numpy(), first, rtol=1e-12)
            expected = first
        else:
            np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)

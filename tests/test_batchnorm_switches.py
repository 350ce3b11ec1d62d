"""BatchNorm's PyTorch switches (track_running_stats, reset_running_stats, reset_parameters),
tuple axes, and the gradient checks of every new path: renorm, masks, batch statistics in
inference, tuple axes. float64, every element, first and second order, per backend.

PyTorch's rules come from its documentation of torch.nn.BatchNorm1d: with
track_running_stats=False the running buffers are None and batch statistics are used in
training and evaluation alike; a built layer whose track_running_stats is set to False
afterwards stops updating its buffers but still evaluates with them. Where PyTorch is installed,
the tests also run it; without it the NumPy references here still check everything.
"""

import numpy as np
import pytest

import minigrad as mg
from conftest import normal
from minigrad.nn import functional as F
from minigrad.ops import batch_norm as ops_bn

try:
    import torch
except ImportError:  # PyTorch is optional: the NumPy references below always run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is optional; the NumPy reference tests always run")


def batch_normalized(x, axes, epsilon):
    """(x - mean) / sqrt(var + eps) over `axes` (the reduction axes), in NumPy."""
    return (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + epsilon)


# ---- track_running_stats ---------------------------------------------------------------------------

def test_without_running_stats_the_layer_keeps_none_and_uses_batch_statistics_in_inference():
    layer = mg.nn.BatchNorm(track_running_stats=False, epsilon=1e-5, dtype="float64")
    x = normal((8, 3), 1) * 3 + 1
    y_train = layer(mg.Tensor(x), training=True).numpy()
    y_infer = layer(mg.Tensor(x), training=False).numpy()
    np.testing.assert_allclose(y_train, batch_normalized(x, 0, 1e-5), atol=1e-12)
    np.testing.assert_array_equal(y_infer, y_train)
    assert layer.moving_mean is None and layer.moving_variance is None and layer.num_batches_tracked is None
    assert set(layer.state_dict()) == {"gamma", "beta"}
    layer.eval()
    np.testing.assert_array_equal(layer(mg.Tensor(x)).numpy(), y_train)


def test_turning_running_stats_off_on_a_built_layer_stops_the_updates_but_inference_uses_them():
    layer = mg.nn.BatchNorm(momentum=0.5, dtype="float64")
    x = normal((8, 3), 2) * 2 + 5
    layer(mg.Tensor(x), training=True)
    frozen = {name: value.copy() for name, value in layer.state_dict().items()}
    layer.track_running_stats = False
    y = layer(mg.Tensor(normal((8, 3), 3)), training=True).numpy()
    np.testing.assert_allclose(y, batch_normalized(normal((8, 3), 3), 0, 1e-3), atol=1e-12)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, frozen[name], err_msg=name)
    expected = (x - frozen["moving_mean"]) / np.sqrt(frozen["moving_variance"] + 1e-3)
    np.testing.assert_allclose(layer(mg.Tensor(x), training=False).numpy(), expected, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("turn_off_after_build", [False, True])
def test_track_running_stats_matches_pytorch(turn_off_after_build):
    shape = (10, 4)
    ours = mg.nn.BatchNorm(momentum=0.9, epsilon=1e-5, unbiased=True, dtype="float64",
                           track_running_stats=turn_off_after_build)
    theirs = torch.nn.BatchNorm1d(4, momentum=0.1, eps=1e-5, track_running_stats=turn_off_after_build,
                                  dtype=torch.float64)
    x0 = normal(shape, 4)
    ours(mg.Tensor(x0), training=True)
    theirs.train()(torch.tensor(x0))
    if turn_off_after_build:
        ours.track_running_stats = False
        theirs.track_running_stats = False
    for seed in (5, 6):
        x = normal(shape, seed) * 2 - 1
        np.testing.assert_allclose(ours(mg.Tensor(x), training=True).numpy(),
                                   theirs.train()(torch.tensor(x)).detach().numpy(), atol=1e-10)
        np.testing.assert_allclose(ours(mg.Tensor(x), training=False).numpy(),
                                   theirs.eval()(torch.tensor(x)).detach().numpy(), atol=1e-10)
    if turn_off_after_build:
        np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.running_mean.numpy(), atol=1e-12)
        np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.running_var.numpy(), atol=1e-12)
        assert int(ours.num_batches_tracked.item()) == int(theirs.num_batches_tracked) == 1


def test_renorm_needs_running_stats():
    with pytest.raises(ValueError, match="renorm=True .* track_running_stats=False"):
        mg.nn.BatchNorm(renorm=True, track_running_stats=False)
    with pytest.raises(ValueError, match="renorm=True .*momentum=None"):  # Keras: float(None) fails too
        mg.nn.BatchNorm(renorm=True, momentum=None)
    with pytest.raises(TypeError, match="track_running_stats must be True or False, got 'no'"):
        mg.nn.BatchNorm(track_running_stats="no")


# ---- reset_running_stats and reset_parameters -------------------------------------------------------

@pytest.mark.parametrize("renorm", [False, True])
def test_reset_running_stats_and_reset_parameters(renorm):
    layer = mg.nn.BatchNorm(momentum=None if not renorm else 0.5, renorm=renorm, dtype="float64")
    x = normal((8, 3), 7) * 3 + 2
    layer(mg.Tensor(x), training=True)
    layer.gamma.data[...] = 3.0
    layer.beta.data[...] = -1.0
    gamma = layer.gamma  # an optimizer holds this object: the reset must write into it
    layer.reset_running_stats()
    fresh = mg.nn.BatchNorm(renorm=renorm, dtype="float64")
    fresh.build((8, 3))
    for name in ops_bn_statistics(layer):
        np.testing.assert_array_equal(getattr(layer, name).numpy(), getattr(fresh, name).numpy(), err_msg=name)
    assert float(layer.gamma.numpy()[0]) == 3.0  # parameters are left alone
    layer.reset_parameters()
    assert layer.gamma is gamma
    for name, value in fresh.state_dict().items():
        np.testing.assert_array_equal(layer.state_dict()[name], value, err_msg=name)
    # After the reset, momentum=None averages from the next batch on, as from new.
    if not renorm:
        layer(mg.Tensor(x), training=True)
        np.testing.assert_allclose(layer.moving_mean.numpy(), x.mean(axis=0), atol=1e-12)


def ops_bn_statistics(layer):
    return [name for name in layer.STATISTICS if getattr(layer, name) is not None]


@needs_torch
def test_reset_running_stats_matches_pytorch():
    ours = mg.nn.BatchNorm(momentum=0.9, epsilon=1e-5, unbiased=True, dtype="float64")
    theirs = torch.nn.BatchNorm1d(3, momentum=0.1, eps=1e-5, dtype=torch.float64)
    x = normal((6, 3), 8) + 4
    ours(mg.Tensor(x), training=True)
    theirs.train()(torch.tensor(x))
    ours.reset_running_stats()
    theirs.reset_running_stats()
    np.testing.assert_array_equal(ours.moving_mean.numpy(), theirs.running_mean.numpy())
    np.testing.assert_array_equal(ours.moving_variance.numpy(), theirs.running_var.numpy())
    assert int(ours.num_batches_tracked.item()) == int(theirs.num_batches_tracked) == 0


# ---- tuple axes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, axis", [((4, 3, 5, 2), (1, 2)), ((4, 3, 5, 2), [1, 3]), ((5, 2, 3), (-1, -2))])
def test_tuple_axis_normalizes_each_position_of_the_feature_axes(shape, axis):
    layer = mg.nn.BatchNorm(axis=axis, momentum=0.0, dtype="float64")
    x = normal(shape, 9) * 2 + 1
    y = layer(mg.Tensor(x), training=True).numpy()
    features = sorted(a % len(shape) for a in axis)
    reduced = tuple(i for i in range(len(shape)) if i not in features)
    feature_shape = tuple(shape[a] for a in features)
    assert layer.gamma.shape == layer.beta.shape == layer.moving_mean.shape == feature_shape
    np.testing.assert_allclose(y, batch_normalized(x, reduced, 1e-3), atol=1e-12)
    np.testing.assert_allclose(layer.moving_mean.numpy(), x.mean(axis=reduced), atol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.numpy(), x.var(axis=reduced), atol=1e-12)
    layer.gamma.data[...] = normal(feature_shape, 10)
    # momentum 0: the moving statistics are this batch's, so inference and training agree here.
    expected = batch_normalized(x, reduced, 1e-3) * np.expand_dims(layer.gamma.numpy(), reduced)
    np.testing.assert_allclose(layer(mg.Tensor(x), training=False).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(layer(mg.Tensor(x), training=True).numpy(), expected, atol=1e-12)


def test_one_axis_in_a_tuple_is_that_axis():
    x = normal((6, 4), 11)
    a, b = mg.nn.BatchNorm(axis=(1,), dtype="float64"), mg.nn.BatchNorm(axis=1, dtype="float64")
    np.testing.assert_array_equal(a(mg.Tensor(x), training=True).numpy(), b(mg.Tensor(x), training=True).numpy())
    assert a.gamma.shape == (4,)


@pytest.mark.parametrize("axis, error, message", [
    ((1, 1), ValueError, "distinct axes, got \\(1, 1\\)"),
    ((), ValueError, "one or more distinct axes"),
    ((1, 2.0), TypeError, "axis must be an int or a tuple of ints, got \\(1, 2.0\\)"),
])
def test_bad_tuple_axes_are_refused(axis, error, message):
    with pytest.raises(error, match=message):
        mg.nn.BatchNorm(axis=axis)


def test_a_tuple_axis_naming_one_axis_twice_is_refused_at_build():
    layer = mg.nn.BatchNorm(axis=(2, -1))
    with pytest.raises(ValueError, match="axis=\\(2, -1\\)\\) cannot be built .* named once"):
        layer.build((2, 3, 4))
    assert not layer.built and layer.state_dict() == {}


def test_functional_tuple_axis_updates_moving_statistics_that_are_not_contiguous():
    x = normal((6, 3, 4), 23)
    moving_mean = mg.Tensor(np.zeros((4, 3)).T)  # a transposed view: reshape(-1) would copy it
    moving_variance = mg.Tensor(np.ones((4, 3)).T)
    F.batch_norm(mg.Tensor(x), None, None, moving_mean, moving_variance, axis=(1, 2), momentum=0.0)
    np.testing.assert_allclose(moving_mean.numpy(), x.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(moving_variance.numpy(), x.var(axis=0), atol=1e-12)
    state = F.Renorm(mg.Tensor(np.zeros(12)), mg.Tensor(np.ones(12)), mg.Tensor(np.ones(12)))
    with pytest.raises(ValueError, match="renorm_mean has shape \\(12,\\), expected \\(3, 4\\)"):
        F.batch_norm(mg.Tensor(x), None, None, moving_mean, moving_variance, axis=(1, 2), renorm=state)


def test_combine_moments_over_parts_equals_the_whole():
    # Split a batch into uneven parts (one empty): combining their channel sums must give the
    # whole batch's mean and biased variance, exactly as synchronized BatchNorm relies on.
    x = normal((17, 3), 24) * 5 + 100  # a large mean, where E[x^2] - E[x]^2 would cancel
    parts = []
    for rows in (slice(0, 5), slice(5, 16), slice(16, 17)):
        block = x[rows]
        parts.append((np.full(3, float(len(block))), block.sum(axis=0),
                      ((block - block.mean(axis=0)) ** 2).sum(axis=0)))
    mean, variance = ops_bn.combine_moments(parts, epsilon=0.0)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(variance, x.var(axis=0), rtol=1e-12)
    one_mean, one_variance = ops_bn.combine_moments(parts[:1], epsilon=0.0)
    np.testing.assert_allclose(one_variance, x[:5].var(axis=0), rtol=1e-12)
    assert np.abs(one_variance - variance).max() > 1  # the parts really differ


def test_a_tuple_axis_that_leaves_nothing_to_reduce_is_refused_and_builds_nothing():
    layer = mg.nn.BatchNorm(axis=(0, 1))
    with pytest.raises(ValueError, match="axis=\\(0, 1\\)\\) cannot be built for input shape \\(4, 3\\)"):
        layer(mg.Tensor(np.ones((4, 3), np.float32)))
    assert not layer.built and layer.state_dict() == {}


# ---- gradient checks of the new paths ---------------------------------------------------------------

def layer_fn(layer, training, mask=None):
    def fn(x, gamma, beta):
        layer.gamma, layer.beta = gamma, beta
        out = layer(x, training=training, mask=mask)
        assert out.dtype == np.float64 and out.backend == x.backend
        return out
    return fn


def built(shape, **options):
    layer = mg.nn.BatchNorm(dtype="float64", **options)
    layer.build(shape)
    return layer


def affine(shape):
    return [1.0 + 0.5 * normal(shape, 12), normal(shape, 13)]


@pytest.mark.parametrize("check", [mg.gradcheck, mg.gradgradcheck], ids=["first", "second"])
@pytest.mark.parametrize("shape, axis", [((6, 3), -1), ((2, 3, 2, 2), 1)])
def test_renorm_with_r_and_d_held_constant_by_clipping(backend, check, shape, axis):
    # renorm_stddev far below the batch's and renorm_mean far off its mean: r and d sit at
    # their clipping bounds (rmax, dmax) for every small change of x, so they are constants
    # and finite differences see the function the layer differentiates.
    layer = built(shape, axis=axis, renorm=True, renorm_clipping=dict(rmax=1.5, rmin=0.5, dmax=0.25))
    layer.renorm_stddev.data[...] = 0.1
    layer.renorm_mean.data[...] = -10.0
    layer.track_running_stats = False  # no updates: every call of the check sees the same state
    fn = layer_fn(layer, True)
    report = check(fn, [normal(shape, 14), *affine((shape[axis],))], names=["x", "gamma", "beta"])
    assert report.passed and report.max_abs_error < 1e-6, str(report)


def test_renorm_backward_treats_r_and_d_as_constants(backend):
    # Unclipped, r and d depend on x; the layer must differentiate as if they did not: its
    # gradients equal those of the reference composition with r and d given as constants.
    shape = (7, 3)
    layer = built(shape, renorm=True)
    layer.renorm_stddev.data[...] = mg.Tensor(np.array([0.5, 1.0, 4.0])).data
    layer.renorm_mean.data[...] = mg.Tensor(np.array([0.3, -0.2, 0.1])).data
    x_values, (gamma_values, beta_values) = normal(shape, 15) * 2, affine((3,))
    mean, variance = x_values.mean(axis=0), x_values.var(axis=0)
    r, d = ops_bn.renorm_correction(mean, variance, np.array([0.3, -0.2, 0.1]), np.array([0.5, 1.0, 4.0]),
                                    1e-3, {})
    grads = []
    for use_layer in (True, False):
        x, gamma, beta = (mg.Tensor(v, requires_grad=True) for v in (x_values, gamma_values, beta_values))
        if use_layer:
            layer.gamma, layer.beta = gamma, beta
            y = layer(x, training=True)
        else:
            x_hat = F.batch_norm(x, form="composite")
            y = ops_bn.renorm_transform(x_hat, gamma, beta, mg.Tensor(r).data, mg.Tensor(d).data)
        (y * mg.Tensor(normal(shape, 16))).sum().backward()
        grads.append([t.grad.numpy() for t in (x, gamma, beta)])
    for ours, expected, name in zip(grads[0], grads[1], ("x", "gamma", "beta")):
        np.testing.assert_allclose(ours, expected, atol=1e-10, err_msg=name)
    assert np.abs(r - 1).min() > 0.1  # r really is far from 1, so a wrong wiring would show


@pytest.mark.parametrize("check", [mg.gradcheck, mg.gradgradcheck], ids=["first", "second"])
def test_masked_statistics(backend, check):
    shape = (4, 5, 3)
    mask = np.random.default_rng(17).random(shape[:-1]) < 0.6
    fn = layer_fn(built(shape), True, mask)
    report = check(fn, [normal(shape, 18), *affine((3,))], names=["x", "gamma", "beta"])
    assert report.passed and report.max_abs_error < 1e-6, str(report)


@pytest.mark.parametrize("check", [mg.gradcheck, mg.gradgradcheck], ids=["first", "second"])
def test_inference_without_running_stats(backend, check):
    shape = (6, 3)
    fn = layer_fn(built(shape, track_running_stats=False), False)
    report = check(fn, [normal(shape, 19), *affine((3,))], names=["x", "gamma", "beta"])
    assert report.passed and report.max_abs_error < 1e-6, str(report)


@pytest.mark.parametrize("check", [mg.gradcheck, mg.gradgradcheck], ids=["first", "second"])
@pytest.mark.parametrize("training", [True, False])
def test_tuple_axis(backend, check, training):
    shape = (3, 2, 2, 3)
    layer = built(shape, axis=(1, 3))
    layer.moving_variance.data[...] = mg.Tensor(np.full((2, 3), 1.5)).data
    fn = layer_fn(layer, training)
    report = check(fn, [normal(shape, 20), *affine((2, 3))], names=["x", "gamma", "beta"])
    assert report.passed and report.max_abs_error < 1e-6, str(report)


def test_repr_shows_the_switches_that_differ_from_their_defaults():
    assert "track_running_stats=False" in repr(mg.nn.BatchNorm(track_running_stats=False))
    shown = repr(mg.nn.BatchNorm(renorm=True, synchronized=True))
    assert "renorm=True" in shown and "synchronized=True" in shown and "track_running_stats" not in shown
    assert "renorm" not in repr(mg.nn.BatchNorm())


def test_a_mask_may_be_a_list_a_tensor_or_an_array_on_the_backend(backend):
    shape = (3, 4, 2)
    mask = np.random.default_rng(21).random(shape[:-1]) < 0.5
    x = normal(shape, 22)
    outputs = []
    for given in (mask, mask.tolist(), mask.astype(np.float32), mg.Tensor(mask), mg.Tensor(mask).data):
        layer = built(shape)
        outputs.append(layer(mg.Tensor(x), training=True, mask=given).numpy())
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])
    with_all = built(shape)(mg.Tensor(x), training=True).numpy()
    assert np.abs(outputs[0] - with_all).max() > 1e-3  # the mask really changed the statistics

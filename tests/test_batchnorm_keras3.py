"""The rest of Keras 3's BatchNormalization against Keras itself: renorm, masks, synchronized.

As in test_batchnorm_keras.py, both layers start from the same non-trivial weights and see
the same batches; outputs and every stored weight must agree to float32 precision after
every training call, and in inference afterwards.
"""

import numpy as np
import pytest

import keras  # noqa: E402  (conftest set KERAS_BACKEND=numpy first)
import minigrad as mg
from test_batchnorm_keras import batches, make_pair

TOLERANCE = dict(rtol=2e-5, atol=2e-5)
RENORM_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean",
                  "renorm_stddev")


def assert_same_weights(reference, ours, names, step):
    for name in names:
        if getattr(reference, name, None) is None:
            continue
        np.testing.assert_allclose(getattr(ours, name).numpy(), np.asarray(getattr(reference, name).numpy()),
                                   **TOLERANCE, err_msg=f"{name} after training call {step}")


RENORM_CONFIGS = [
    pytest.param((16, 5), dict(renorm=True), id="2d-no-clipping"),
    pytest.param((16, 5), dict(renorm=True, renorm_clipping=dict(rmax=1.5, rmin=0.8, dmax=0.3),
                              renorm_momentum=0.9, momentum=0.8), id="2d-clipping"),
    pytest.param((4, 3, 5, 5), dict(renorm=True, axis=1, momentum=0.9), id="4d-nchw-no-clipping"),
    pytest.param((4, 5, 5, 3), dict(renorm=True, renorm_clipping=dict(rmax=1.2, dmax=0.1),
                                   renorm_momentum=0.5), id="4d-nhwc-clipping"),
    pytest.param((16, 5), dict(renorm=True, renorm_clipping=dict(rmax=1.0, rmin=1.0, dmax=0.0),
                              center=False), id="2d-clipped-to-batchnorm-no-center"),
    pytest.param((16, 5), dict(renorm=True, scale=False, epsilon=0.1), id="2d-no-scale"),
]


@pytest.mark.parametrize("shape, options", RENORM_CONFIGS)
def test_renorm_training_then_inference_matches_keras_on_all_seven_weights(shape, options):
    reference, ours = make_pair(shape, **options)
    assert [name for name, _ in ours.named_weights() if name != "num_batches_tracked"] == [
        v.name for v in reference.weights]
    for step, x in enumerate(batches(shape, 5), 1):
        expected = np.asarray(reference(x, training=True))
        np.testing.assert_allclose(ours(mg.Tensor(x), training=True).numpy(), expected, **TOLERANCE,
                                   err_msg=f"training output {step}")
        assert_same_weights(reference, ours, RENORM_WEIGHTS, step)
    for x in batches(shape, 2, seed=7):
        np.testing.assert_allclose(ours(mg.Tensor(x), training=False).numpy(),
                                   np.asarray(reference(x, training=False)), **TOLERANCE)
    assert_same_weights(reference, ours, RENORM_WEIGHTS, "inference")


def test_renorm_clipping_really_clips():
    # Without clipping r and d are far from 1 and 0 here; clipped to rmax=rmin=1, dmax=0 the
    # layer is plain BatchNorm in training. So the two must differ, and the clipped one must
    # equal a plain BatchNorm with the same weights.
    shape = (32, 4)
    x = (np.random.default_rng(3).normal(size=shape) * 4 + 2).astype(np.float32)
    _, free = make_pair(shape, renorm=True)
    _, clipped = make_pair(shape, renorm=True, renorm_clipping=dict(rmax=1.0, rmin=1.0, dmax=0.0))
    _, plain = make_pair(shape)
    y_free = free(mg.Tensor(x), training=True).numpy()
    y_clipped = clipped(mg.Tensor(x), training=True).numpy()
    np.testing.assert_allclose(y_clipped, plain(mg.Tensor(x), training=True).numpy(), **TOLERANCE)
    assert np.abs(y_free - y_clipped).max() > 0.5


def test_renorm_stddev_guard_matches_keras():
    # renorm_stddev of 0 would divide by zero; Keras takes it as at least sqrt(epsilon).
    shape = (8, 3)
    reference, ours = make_pair(shape, renorm=True)
    reference.renorm_stddev.assign(np.zeros(3, np.float32))
    ours.renorm_stddev.data[...] = 0.0
    x = batches(shape, 1)[0]
    expected = np.asarray(reference(x, training=True))
    got = ours(mg.Tensor(x), training=True).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_renorm_weights_are_saved_and_loaded():
    shape = (16, 5)
    _, ours = make_pair(shape, renorm=True)
    for x in batches(shape, 3):
        ours(mg.Tensor(x), training=True)
    state = ours.state_dict()
    assert {"moving_stddev", "renorm_mean", "renorm_stddev"} <= set(state)
    _, fresh = make_pair(shape, seed=5, renorm=True)
    fresh.load_state_dict(state)
    for name in RENORM_WEIGHTS:
        np.testing.assert_array_equal(getattr(fresh, name).numpy(), getattr(ours, name).numpy())
    state["renorm_stddev"] = -state["renorm_stddev"]
    before = fresh.state_dict()
    with pytest.raises(ValueError, match="renorm_stddev must be finite and >= 0"):
        fresh.load_state_dict(state)
    for name, value in fresh.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_renorm_clipping_values_must_be_numbers():
    for bad in ("2", True, float("nan")):
        with pytest.raises(ValueError, match="renorm_clipping\\['rmax'\\] must be a number or None"):
            mg.nn.BatchNorm(renorm=True, renorm_clipping={"rmax": bad})


@pytest.mark.parametrize("clipping, message", [
    (dict(rmax=2.0, dmin=0.1), "invalid keys for `renorm_clipping`.*dmin"),
    (dict(rmax=0.5, rmin=1.0), "rmax should be greater than rmin.*rmax=0.5, rmin=1.0"),
    (dict(dmax=-1.0), "dmax should be non-negative.*dmax=-1.0"),
])
def test_bad_renorm_clipping_is_refused_as_keras_refuses_it(clipping, message):
    with pytest.raises(ValueError):
        keras.layers.BatchNormalization(renorm=True, renorm_clipping=clipping)
    with pytest.raises(ValueError, match=message):
        mg.nn.BatchNorm(renorm=True, renorm_clipping=clipping)


def test_renorm_defaults_and_clipping_stored_as_keras_stores_them():
    for options in (dict(), dict(renorm=True), dict(renorm=True, renorm_clipping=dict(rmax=3.0))):
        reference, ours = keras.layers.BatchNormalization(**options), mg.nn.BatchNorm(**options)
        for name in ("renorm", "renorm_clipping", "renorm_momentum", "synchronized"):
            assert getattr(ours, name) == getattr(reference, name), (options, name)


# ---- masks ---------------------------------------------------------------------------------------

def masks(shape, count, seed=2):
    rng = np.random.default_rng(seed)
    return [rng.random(shape) < 0.6 for _ in range(count)]


MASK_CONFIGS = [
    pytest.param((6, 7, 4), dict(momentum=0.8), id="sequence-3d"),
    pytest.param((3, 4, 4, 5), dict(momentum=0.5, epsilon=0.01), id="nhwc-4d"),
    pytest.param((6, 7, 4), dict(momentum=0.8, renorm=True, renorm_clipping=dict(rmax=1.5)), id="with-renorm"),
]


@pytest.mark.parametrize("shape, options", MASK_CONFIGS)
def test_masked_statistics_match_keras(shape, options):
    reference, ours = make_pair(shape, **options)
    for step, (x, mask) in enumerate(zip(batches(shape, 4), masks(shape[:-1], 4)), 1):
        expected = np.asarray(reference(x, training=True, mask=mask))
        np.testing.assert_allclose(ours(mg.Tensor(x), training=True, mask=mask).numpy(), expected,
                                   **TOLERANCE, err_msg=f"training output {step}")
        assert_same_weights(reference, ours, RENORM_WEIGHTS, step)
    x, mask = batches(shape, 1, seed=9)[0], masks(shape[:-1], 1, seed=9)[0]
    np.testing.assert_allclose(ours(mg.Tensor(x), training=False, mask=mask).numpy(),
                               np.asarray(reference(x, training=False, mask=mask)), **TOLERANCE)


def test_masked_values_do_not_reach_the_statistics():
    # Changing the masked positions wildly changes nothing about the unmasked ones' output or
    # the moving statistics; and the statistics are those of the unmasked values alone.
    shape = (5, 6, 3)
    x = batches(shape, 1)[0]
    mask = masks(shape[:-1], 1)[0]
    spoiled = np.where(mask[..., None], x, 1e4).astype(np.float32)
    outputs, states = [], []
    for values in (x, spoiled):
        layer = mg.nn.BatchNorm(momentum=0.0)
        outputs.append(layer(mg.Tensor(values), training=True, mask=mask).numpy())
        states.append((layer.moving_mean.numpy(), layer.moving_variance.numpy()))
    np.testing.assert_array_equal(outputs[0][mask], outputs[1][mask])
    np.testing.assert_array_equal(states[0][0], states[1][0])
    kept = x[mask]  # (unmasked positions, 3)
    np.testing.assert_allclose(states[0][0], kept.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(states[0][1], kept.var(axis=0), rtol=1e-5)
    assert np.abs(outputs[1][~mask]).min() > 100  # masked positions are normalized too


@pytest.mark.parametrize("padding", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_masked_positions_reaches_nothing_as_in_keras(padding):
    shape = (4, 6, 3)
    reference, ours = make_pair(shape, momentum=0.5, renorm=True)
    x, mask = batches(shape, 1)[0], masks(shape[:-1], 1)[0]
    x[~mask] = padding
    expected = np.asarray(reference(x, training=True, mask=mask))
    got = ours(mg.Tensor(x), training=True, mask=mask).numpy()
    np.testing.assert_allclose(got[mask], expected[mask], **TOLERANCE)
    assert np.isfinite(got[mask]).all()
    assert_same_weights(reference, ours, RENORM_WEIGHTS, 1)


def test_a_fully_masked_batch_gives_zeros_not_nan_as_in_keras():
    shape = (4, 5, 3)
    reference, ours = make_pair(shape, momentum=0.5)
    x = batches(shape, 1)[0]
    mask = np.zeros(shape[:-1], bool)
    expected = np.asarray(reference(x, training=True, mask=mask))
    got = ours(mg.Tensor(x), training=True, mask=mask).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, **TOLERANCE)
    assert_same_weights(reference, ours, ("moving_mean", "moving_variance"), 1)


def test_moving_statistics_see_only_the_unmasked_steps():
    # A sequence batch where the second half of every sequence is padding (masked): the moving
    # statistics must be those of the real steps alone, as Keras's are.
    shape = (4, 10, 2)
    rng = np.random.default_rng(4)
    x = rng.normal(size=shape).astype(np.float32)
    x[:, 5:] = 50.0  # padding values, far from the data
    mask = np.zeros(shape[:-1], bool)
    mask[:, :5] = True
    reference, ours = make_pair(shape, momentum=0.0)
    reference(x, training=True, mask=mask)
    ours(mg.Tensor(x), training=True, mask=mask)
    assert_same_weights(reference, ours, ("moving_mean", "moving_variance"), 1)
    np.testing.assert_allclose(ours.moving_mean.numpy(), x[:, :5].mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mask, message", [
    (np.ones((4, 5, 3), bool), "one axis fewer than the input.*mask shape \\(4, 5, 3\\)"),
    (np.ones((4, 6), bool), "mask shape \\(4, 6\\) does not fit input shape \\(4, 5, 3\\)"),
])
def test_a_mask_of_the_wrong_shape_is_refused_and_changes_nothing(mask, message):
    layer = mg.nn.BatchNorm()
    x = mg.Tensor(batches((4, 5, 3), 1)[0])
    layer(x, training=True)
    before = layer.state_dict()
    with pytest.raises(ValueError, match=message):
        layer(x, training=True, mask=mask)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_the_mask_is_checked_in_inference_too_as_keras_checks_it():
    layer = mg.nn.BatchNorm()
    x = batches((8, 3, 2), 1)[0]
    layer(mg.Tensor(x), training=True)
    with pytest.raises(ValueError):
        keras.layers.BatchNormalization()(x, training=False, mask=np.ones(5, bool))
    with pytest.raises(ValueError, match="one axis fewer than the input"):
        layer(mg.Tensor(x), training=False, mask=np.ones(5, bool))


def test_only_batchnorm_takes_a_mask():
    layer = mg.nn.Dense(2)
    with pytest.raises(TypeError, match="Dense takes no mask"):
        layer(mg.Tensor(np.ones((3, 2), np.float32)), mask=np.ones(3, bool))
    assert not layer.built


# ---- synchronized --------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [dict(), dict(renorm=True), dict(axis=1, momentum=None)])
def test_synchronized_in_one_process_is_exactly_unsynchronized(options):
    shape = (6, 3, 4)
    layers = [mg.nn.BatchNorm(synchronized=flag, **options) for flag in (False, True)]
    for x in batches(shape, 3):
        outputs = [layer(mg.Tensor(x), training=True).numpy() for layer in layers]
        np.testing.assert_array_equal(outputs[0], outputs[1])
    for (name, a), (_, b) in zip(layers[0].named_weights(), layers[1].named_weights()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)

"""BatchNorm against Keras's own BatchNormalization (KERAS_BACKEND=numpy, set in conftest).

Both layers get the same weights and the same batches. Outputs in training and inference
mode and the moving statistics after every training call must agree to float32 precision.
"""

import numpy as np
import pytest

import keras  # noqa: E402  (conftest set KERAS_BACKEND=numpy first)
import minigrad as mg

assert keras.backend.backend() == "numpy", "the reference must be Keras's NumPy backend"

# float32 agreement: Keras computes the variance as E[x^2] - E[x]^2 and the inference output
# as x * inv + (beta - mean * inv); minigrad centres first. Both round differently in the last
# bits of float32, nothing more.
TOLERANCE = dict(rtol=2e-5, atol=2e-5)


def make_pair(shape, seed=0, **options):
    """A Keras layer and a minigrad layer with identical, non-trivial starting weights."""
    reference = keras.layers.BatchNormalization(**options)
    reference.build(shape)
    ours = mg.nn.BatchNorm(**options)
    ours.build(shape)
    rng = np.random.default_rng(seed)
    features = shape[options.get("axis", -1)]
    variance = rng.uniform(0.5, 2.0, features)
    values = {
        "gamma": rng.uniform(0.5, 1.5, features), "beta": rng.normal(size=features),
        "moving_mean": rng.normal(size=features), "moving_variance": variance,
        "moving_stddev": np.sqrt(variance), "renorm_mean": rng.normal(size=features) * 0.5,
        "renorm_stddev": rng.uniform(0.5, 2.0, features),
    }
    for name, value in values.items():
        variable = getattr(reference, name, None)
        if variable is not None:
            variable.assign(value.astype(np.float32))
            getattr(ours, name).data[...] = value.astype(np.float32)
    return reference, ours


def batches(shape, count, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=shape) * rng.uniform(0.5, 3.0) + rng.normal()).astype(np.float32)
            for _ in range(count)]


def assert_same_state(reference, ours):
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(ours, name).numpy(), np.asarray(getattr(reference, name).numpy()),
                                   **TOLERANCE, err_msg=name)


CONFIGS = [
    pytest.param((16, 5), {}, id="defaults-2d"),
    pytest.param((16, 5), dict(momentum=0.9, epsilon=1e-5), id="momentum0.9-eps1e-5"),
    pytest.param((16, 5), dict(momentum=0.0), id="momentum0"),
    pytest.param((16, 5), dict(momentum=0.5, epsilon=0.1), id="momentum0.5-eps0.1"),
    pytest.param((4, 3, 5, 5), dict(axis=1), id="nchw-axis1"),
    pytest.param((4, 5, 5, 3), dict(axis=-1, momentum=0.8), id="nhwc-axis-1"),
    pytest.param((4, 6, 3), dict(axis=-2), id="3d-axis-2"),
    pytest.param((16, 5), dict(center=False), id="no-center"),
    pytest.param((16, 5), dict(scale=False), id="no-scale"),
    pytest.param((16, 5), dict(center=False, scale=False), id="no-center-no-scale"),
]


@pytest.mark.parametrize("shape, options", CONFIGS)
def test_training_outputs_and_moving_statistics_match_keras(shape, options):
    reference, ours = make_pair(shape, **options)
    for x in batches(shape, 4):
        expected = np.asarray(reference(x, training=True))
        got = ours(mg.Tensor(x), training=True)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got.numpy(), expected, **TOLERANCE)
        assert_same_state(reference, ours)


@pytest.mark.parametrize("shape, options", CONFIGS)
def test_inference_outputs_match_keras_and_update_nothing(shape, options):
    reference, ours = make_pair(shape, **options)
    for x in batches(shape, 2, seed=5):  # train a little, so the moving statistics move
        reference(x, training=True)
        ours(mg.Tensor(x), training=True)
    before = ours.state_dict()
    x = batches(shape, 1, seed=9)[0]
    np.testing.assert_allclose(ours(mg.Tensor(x), training=False).numpy(),
                               np.asarray(reference(x, training=False)), **TOLERANCE)
    ours.eval()
    np.testing.assert_allclose(ours(mg.Tensor(x)).numpy(), np.asarray(reference(x)), **TOLERANCE)
    for name, value in before.items():
        np.testing.assert_array_equal(ours.state_dict()[name], value, err_msg=name)


def test_frozen_layer_runs_in_inference_mode_like_keras():
    shape = (8, 4)
    reference, ours = make_pair(shape)
    reference.trainable = False
    ours.trainable = False
    assert ours.parameters() == []
    before = ours.state_dict()
    for x in batches(shape, 2):
        np.testing.assert_allclose(ours(mg.Tensor(x), training=True).numpy(),
                                   np.asarray(reference(x, training=True)), **TOLERANCE)
    assert_same_state(reference, ours)
    for name, value in before.items():
        np.testing.assert_array_equal(ours.state_dict()[name], value, err_msg=name)


def test_defaults_and_weights_are_the_seeds():
    reference = keras.layers.BatchNormalization()
    ours = mg.nn.BatchNorm()
    for name in ("axis", "momentum", "epsilon", "center", "scale"):
        expected = getattr(reference, name)
        assert getattr(ours, name) == expected, name
    assert ours.unbiased is False
    shape = (3, 4)
    reference.build(shape)
    ours.build(shape)
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        np.testing.assert_array_equal(getattr(ours, name).numpy(), np.asarray(getattr(reference, name).numpy()))
    assert [n for n, _ in ours.named_parameters()] == ["gamma", "beta"]
    trainable = {v.path.split("/")[-1] for v in reference.trainable_weights}
    assert trainable == {"gamma", "beta"}


def test_biased_moving_variance_as_in_keras_own_test():
    # Keras's test: momentum 0 and the batch [1, 2] give moving_variance 0.25, not 0.5.
    x = np.array([[1.0], [2.0]], dtype=np.float32)
    reference, ours = keras.layers.BatchNormalization(momentum=0.0), mg.nn.BatchNorm(momentum=0.0)
    reference(x, training=True)
    ours(mg.Tensor(x), training=True)
    assert float(np.asarray(reference.moving_variance.numpy())[0]) == pytest.approx(0.25)
    assert ours.moving_variance.item() == pytest.approx(0.25)
    unbiased = mg.nn.BatchNorm(momentum=0.0, unbiased=True)
    unbiased(mg.Tensor(x), training=True)
    assert unbiased.moving_variance.item() == pytest.approx(0.5)

"""Keras 3.15's own BatchNormalization test cases for renorm, masks and configs, ported to minigrad.

From keras/src/layers/normalization/batch_normalization_test.py (Apache 2.0): the expected
values are Keras's, computed there from the formulas, not from minigrad's output. Where Keras
trains a model to get there (test_bachnorm_ignore_masked_values), one training call of the
layer gives the same moving statistics, since momentum is 0.
"""

import numpy as np
import pytest

import minigrad as mg


@pytest.mark.parametrize("synchronized", [False, True])
def test_input_fully_masked(synchronized):
    norm = mg.nn.BatchNorm(scale=False, center=False, synchronized=synchronized)
    y = norm(np.zeros((4, 5)), mask=np.zeros((4,), dtype=np.float32), training=True)
    np.testing.assert_allclose(y.numpy(), np.zeros((4, 5), np.float32))


@pytest.mark.parametrize("mask_value", [0.0, 0.1, 1])
def test_batchnorm_ignores_masked_values(mask_value):
    padded = np.array([[[1, 5], [2, 5], [mask_value, mask_value], [mask_value, mask_value]]
                       for _ in range(10)], dtype="float32")
    mask = np.any(padded != mask_value, axis=-1)  # what keras.layers.Masking(mask_value) computes
    layer = mg.nn.BatchNorm(momentum=0.0)
    layer(padded, training=True, mask=mask)
    np.testing.assert_allclose(layer.moving_mean.numpy(), [1.5, 5.0], atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), [0.25, 0.0], atol=1e-6)


def test_masked_broadcast_normalization():
    layer = mg.nn.BatchNorm(axis=-1, momentum=0.0, epsilon=1e-3)
    y = layer(np.ones((1, 2, 3, 4), np.float32), training=True, mask=np.ones((1, 2, 1), np.float32)).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), np.zeros(4), atol=1e-6)
    np.testing.assert_allclose(y, np.zeros_like(y), atol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.numpy(), np.ones(4), atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), np.zeros(4), atol=1e-6)


def test_renorm_stddev_initializer():
    layer = mg.nn.BatchNorm(renorm=True, moving_variance_initializer=mg.nn.initializers.Constant(4.0))
    layer.build((None, 5))
    np.testing.assert_allclose(layer.moving_stddev.numpy(), np.full((5,), 2.0), atol=1e-6)
    np.testing.assert_allclose(layer.renorm_stddev.numpy(), np.full((5,), 2.0), atol=1e-6)


def test_renorm_inference():
    bn, bn_renorm = mg.nn.BatchNorm(renorm=False), mg.nn.BatchNorm(renorm=True)
    bn.build((None, 10))
    bn_renorm.build((None, 10))
    rng = np.random.default_rng(0)
    for attr in ["gamma", "beta", "moving_mean", "moving_variance"]:
        getattr(bn, attr).data[...] = rng.normal(size=10)
        getattr(bn_renorm, attr).data[...] = getattr(bn, attr).data
    bn.moving_variance.data[...] = bn_renorm.moving_variance.data[...] = np.abs(bn.moving_variance.data)
    x = rng.normal(size=(4, 10)).astype(np.float32)
    np.testing.assert_allclose(bn(x, training=False).numpy(), bn_renorm(x, training=False).numpy(),
                               atol=1e-5, rtol=1e-5)


def test_renorm_correctness():
    epsilon, momentum, renorm_momentum = 1e-3, 0.9, 0.8
    layer = mg.nn.BatchNorm(axis=-1, epsilon=epsilon, momentum=momentum, renorm=True,
                            renorm_momentum=renorm_momentum)
    layer.build((None, 3))
    rng = np.random.default_rng(1337)
    size = (3,)
    init = {
        "moving_mean": rng.normal(0.0, 1.0, size=size),
        "moving_variance": np.abs(rng.normal(1.0, 0.5, size=size)),
        "renorm_mean": rng.normal(0.0, 1.0, size=size),
        "renorm_stddev": np.abs(rng.normal(1.0, 0.5, size=size)),
        "gamma": rng.normal(1.0, 0.1, size=size),
        "beta": rng.normal(0.0, 0.1, size=size),
    }
    init["moving_stddev"] = np.sqrt(init["moving_variance"])
    for name, value in init.items():
        getattr(layer, name).data[...] = value
    init = {name: getattr(layer, name).numpy().astype(np.float64) for name in init}  # as stored, float32
    x = np.array([[4.0, 6.0, 2.0], [8.0, -2.0, 5.0], [6.0, 4.0, 3.0]], dtype="float32")

    batch_mean, batch_var = np.mean(x, axis=0), np.var(x, axis=0)
    batch_stddev = np.sqrt(batch_var + epsilon)
    r = batch_stddev / init["renorm_stddev"]
    d = (batch_mean - init["renorm_mean"]) / init["renorm_stddev"]
    expected_output = (((x - batch_mean) / batch_stddev) * r + d) * init["gamma"] + init["beta"]
    np.testing.assert_allclose(layer(x, training=True).numpy(), expected_output, atol=1e-5)

    expected = {
        "renorm_mean": init["renorm_mean"] * renorm_momentum + batch_mean * (1 - renorm_momentum),
        "renorm_stddev": init["renorm_stddev"] * renorm_momentum + batch_stddev * (1 - renorm_momentum),
        "moving_mean": init["moving_mean"] * momentum + batch_mean * (1 - momentum),
        "moving_stddev": init["moving_stddev"] * momentum + batch_stddev * (1 - momentum),
    }
    expected["moving_variance"] = expected["moving_stddev"] ** 2 - epsilon
    for name, value in expected.items():
        np.testing.assert_allclose(getattr(layer, name).numpy(), value, atol=1e-5, err_msg=name)

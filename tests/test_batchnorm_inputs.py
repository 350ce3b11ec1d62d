"""BatchNorm and the losses on awkward input: integers, bad modes, epsilons that vanish, empty
batches, huge float32 batches. A call that raises changes nothing."""

import re

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import functional as F
from conftest import normal


def layer_state(layer):
    return {name: value.copy() for name, value in layer.state_dict().items()}


def assert_unchanged(layer, before):
    after = layer.state_dict()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_integer_and_bool_input_is_normalized_as_float32_like_keras(backend):
    ints = np.random.default_rng(0).integers(0, 10, size=(16, 3))
    for x in (ints, ints > 4):
        as_int, as_float = mg.nn.BatchNorm(momentum=0.5), mg.nn.BatchNorm(momentum=0.5)
        y = as_int(mg.Tensor(x, dtype=x.dtype), training=True)
        expected = as_float(mg.Tensor(x.astype(np.float32)), training=True)
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y.numpy(), expected.numpy())
        assert_unchanged(as_int, as_float.state_dict())  # the same moving statistics
        frozen = mg.nn.BatchNorm()
        frozen.build((None, 3))
        frozen.moving_variance.data[...] = 4.0
        frozen.trainable = False
        y = frozen(mg.Tensor(x, dtype=x.dtype), training=True)
        assert y.dtype == np.float32  # not truncated back to integers
        np.testing.assert_allclose(y.numpy(), x / np.sqrt(4.0 + 1e-3), rtol=1e-6)


def test_functional_batch_norm_takes_integer_input_and_returns_float():
    x = mg.Tensor(np.arange(12).reshape(6, 2), dtype=np.int64)
    y = F.batch_norm(x, training=True)
    assert y.dtype == np.float32
    reference = np.arange(12.0).reshape(6, 2)
    expected = (reference - reference.mean(0)) / np.sqrt(reference.var(0) + 1e-3)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("training", ["False", "True", 0, 1, 0.0, np.array(True)])
def test_training_must_be_a_bool_or_none(training):
    layer = mg.nn.BatchNorm()
    model = mg.nn.Sequential(mg.nn.Dense(3), layer)
    x = mg.Tensor(normal((8, 4)).astype(np.float32))
    model(x)  # built
    before = layer_state(layer)
    for call in (lambda: layer(model[0](x), training=training), lambda: model(x, training=training)):
        with pytest.raises(TypeError, match=re.escape(f"training must be True, False or None, got {training!r}")):
            call()
        assert_unchanged(layer, before)
    with pytest.raises(TypeError, match="batch_norm: training must be True or False"):
        F.batch_norm(x, training=training)
    layer(model[0](x), training=np.bool_(False))  # NumPy's own bool is a bool


def test_a_call_that_raises_changes_no_state():
    layer = mg.nn.BatchNorm(momentum=None)
    layer(mg.Tensor(normal((8, 3)).astype(np.float32)))
    before = layer_state(layer)
    bad_calls = [
        (ValueError, lambda: layer(mg.Tensor(np.zeros((8, 4), np.float32)))),  # wrong features
        (ValueError, lambda: layer(mg.Tensor(np.zeros((2, 8, 3), np.float32)))),  # wrong rank
        (ValueError, lambda: layer(mg.Tensor(np.zeros((1, 3), np.float32)))),  # one value per channel
        (TypeError, lambda: layer(mg.Tensor(np.zeros((8, 3), np.float32)), training="yes")),
    ]
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
        assert_unchanged(layer, before)


@pytest.mark.parametrize("epsilon", [0.0, -1e-3, float("nan"), float("inf"), 1e-50])
def test_an_epsilon_that_is_not_positive_in_the_compute_dtype_is_refused(epsilon):
    x = mg.Tensor(normal((8, 3)).astype(np.float32))
    with pytest.raises(ValueError, match=f"batch_norm: epsilon must be a finite number > 0 that float32 can hold.*got {epsilon!r}"):
        F.batch_norm(x, training=True, epsilon=epsilon)
    with pytest.raises(ValueError, match="BatchNorm: epsilon must be a finite number > 0"):
        mg.nn.BatchNorm(epsilon=epsilon)


def test_a_tiny_epsilon_is_fine_where_the_dtype_holds_it():
    layer = mg.nn.BatchNorm(epsilon=1e-50, dtype="float64")
    x = mg.Tensor(np.zeros((4, 2)))  # a constant feature: 0 / sqrt(0 + eps)
    assert np.array_equal(layer(x).numpy(), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="float32 can hold"):
        F.batch_norm(x.astype(np.float32), training=True, epsilon=1e-50)


def test_softmax_cross_entropy_says_the_batch_is_empty():
    with pytest.raises(ValueError, match="the batch is empty \\(logits of shape \\(0, 10\\)\\)"):
        F.softmax_cross_entropy(mg.Tensor(np.zeros((0, 10), np.float32)), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="the batch is empty"):
        F.softmax_cross_entropy(mg.Tensor(np.zeros((3, 0), np.float32)), np.zeros(3, np.int64))


def test_a_large_float32_batch_far_from_zero_stays_within_pytorchs_error():
    """(1,000,000, 4) at mean 1e4 and std 100: a float32 running sum of the batch loses the
    mean, and Eq. 3a then sees that error as variance (the output was off by 0.76 and the
    variance by 16%). PyTorch's float32 is off by 0.018 on this batch."""
    x64 = np.random.default_rng(0).normal(1e4, 100, (1_000_000, 4))
    x = x64.astype(np.float32)
    reference = x.astype(np.float64)
    mean, variance = reference.mean(0), reference.var(0)
    expected = (reference - mean) / np.sqrt(variance + 1e-3)
    layer = mg.nn.BatchNorm(momentum=0.0)  # the moving statistics become this batch's
    y = layer(mg.Tensor(x), training=True).numpy()
    assert np.abs(y - expected).max() < 0.018
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=1e-3)

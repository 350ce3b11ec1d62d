"""BatchNorm on convolutional feature maps: the paper's Section 3.2, one statistic per channel
over every position of the batch, m = N*H*W.

BatchNorm() after a channels_last Conv2D and BatchNorm(axis=1) after a channels_first one must
match PyTorch's BatchNorm2d on the same maps (outputs, dl/dx and the running statistics), and
a NumPy formula always.
"""

import numpy as np
import pytest

import minigrad as mg

try:
    import torch
except ImportError:  # PyTorch is optional: the NumPy reference test always runs
    torch = None


def conv_features(data_format, seed=0):
    """A Conv2D's output on a small batch, float64: (2, 6, 5, 4) channels_last, (2, 4, 6, 5) first."""
    mg.manual_seed(seed)
    conv = mg.nn.Conv2D(4, 3, padding="same", data_format=data_format, dtype="float64")
    shape = (2, 6, 5, 3) if data_format == "channels_last" else (2, 3, 6, 5)
    x = np.random.default_rng(seed).normal(size=shape) * 2 + 1
    return conv(mg.Tensor(x)).numpy()


@pytest.mark.parametrize("data_format, axis", [("channels_last", -1), ("channels_first", 1)])
def test_statistics_are_per_channel_over_every_position(data_format, axis):
    features = conv_features(data_format)
    layer = mg.nn.BatchNorm(axis=axis, momentum=0.0, dtype="float64")
    y = layer(mg.Tensor(features), training=True).numpy()
    reduced = tuple(i for i in range(4) if i != axis % 4)
    assert features.size // features.shape[axis] == 2 * 6 * 5  # m = N * H * W values per channel
    np.testing.assert_allclose(layer.moving_mean.numpy(), features.mean(axis=reduced), atol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.numpy(), features.var(axis=reduced), atol=1e-12)
    np.testing.assert_allclose(y.mean(axis=reduced), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=reduced), features.var(axis=reduced) / (features.var(axis=reduced) + 1e-3),
                               rtol=1e-10)


@pytest.mark.skipif(torch is None, reason="PyTorch is optional; the NumPy reference test above always runs")
@pytest.mark.parametrize("data_format, axis", [("channels_last", -1), ("channels_first", 1)])
def test_batchnorm_on_conv_features_matches_pytorch_batchnorm2d(data_format, axis):
    features = conv_features(data_format, seed=1)
    as_nchw = features if data_format == "channels_first" else features.transpose(0, 3, 1, 2)
    ours = mg.nn.BatchNorm(axis=axis, momentum=0.9, epsilon=1e-5, unbiased=True, dtype="float64")
    theirs = torch.nn.BatchNorm2d(4, momentum=0.1, eps=1e-5, dtype=torch.float64)
    upstream = np.random.default_rng(2).normal(size=features.shape)
    for step in range(3):
        x = mg.Tensor(features * (step + 1), requires_grad=True)
        y = ours(x, training=True)
        (y * mg.Tensor(upstream)).sum().backward()
        x_torch = torch.tensor(as_nchw * (step + 1), requires_grad=True)
        y_torch = theirs.train()(x_torch)
        to_nchw = (lambda a: a) if data_format == "channels_first" else (lambda a: a.transpose(0, 3, 1, 2))
        (y_torch * torch.tensor(to_nchw(upstream))).sum().backward()
        np.testing.assert_allclose(to_nchw(y.numpy()), y_torch.detach().numpy(), atol=1e-10)
        np.testing.assert_allclose(to_nchw(x.grad.numpy()), x_torch.grad.numpy(), atol=1e-10)
        np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.running_mean.numpy(), atol=1e-12)
        np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.running_var.numpy(), atol=1e-12)
    np.testing.assert_allclose(to_nchw(ours(mg.Tensor(features), training=False).numpy()),
                               theirs.eval()(torch.tensor(as_nchw)).detach().numpy(), atol=1e-10)

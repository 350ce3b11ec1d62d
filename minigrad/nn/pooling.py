"""Pooling and Flatten layers, as Keras's, and their functional forms.

MaxPooling2D and AveragePooling2D reduce every pool_size window of each channel to one value;
GlobalAveragePooling2D averages each channel over the whole image; Flatten makes one feature
vector per example. The arithmetic and its gradients live in minigrad.ops.pool; this file
checks the arguments and moves channels_first data to channels_last and back.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from minigrad.nn.conv import check_data_format
from minigrad.nn.module import Module
from minigrad.ops import conv as conv_ops
from minigrad.ops import pool as pool_ops
from minigrad.tensor import Tensor


def _layout(data_format: str) -> str:
    return "(batch, height, width, channels)" if data_format == "channels_last" else \
        "(batch, channels, height, width)"


def _spatial_axes(data_format: str) -> tuple[int, int]:
    return (1, 2) if data_format == "channels_last" else (2, 3)


def _pool(
    core: Callable[..., Tensor],
    x: Any,
    pool_size: Any,
    strides: Any,
    padding: Any,
    data_format: Any,
    caller: str,
) -> Tensor:
    """`core` (an NHWC pooling of minigrad.ops.pool) applied in data_format's layout."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    data_format = check_data_format(data_format, caller)
    if x.ndim != 4:
        raise ValueError(f"{caller}: x must have 4 axes {_layout(data_format)} ({data_format}), "
                         f"got shape {x.shape}")
    spatial = tuple(x.shape[i] for i in _spatial_axes(data_format))
    geometry, _ = pool_ops.pool_geometry(spatial, pool_size, strides, padding, caller)  # checks all
    if data_format == "channels_first":
        x = x.transpose(0, 2, 3, 1)  # the core works on channels_last
    y = core(geometry).apply(x)
    return y.transpose(0, 3, 1, 2) if data_format == "channels_first" else y


def max_pool2d(
    x: Tensor,
    pool_size: int | tuple[int, int] = 2,
    strides: int | tuple[int, int] | None = None,
    padding: str = "valid",
    data_format: str = "channels_last",
) -> Tensor:
    """The maximum of every pool_size window of each channel: what keras.layers.MaxPooling2D
    computes. strides=None steps by the pool_size; "same" pads with -inf, the odd pixel at the
    bottom and right; the gradient goes to each window's first maximum (see minigrad.ops.pool).
    """
    return _pool(pool_ops.MaxPool2D, x, pool_size, strides, padding, data_format, "max_pool2d")


def avg_pool2d(
    x: Tensor,
    pool_size: int | tuple[int, int] = 2,
    strides: int | tuple[int, int] | None = None,
    padding: str = "valid",
    data_format: str = "channels_last",
) -> Tensor:
    """The mean of every pool_size window of each channel: what keras.layers.AveragePooling2D
    computes. With "same", a window over the edge averages only its real pixels, as Keras.
    """
    return _pool(pool_ops.AvgPool2D, x, pool_size, strides, padding, data_format, "avg_pool2d")


def global_avg_pool2d(x: Tensor, data_format: str = "channels_last", keepdims: bool = False) -> Tensor:
    """The mean of each channel over height and width: (batch, channels), or with keepdims=True
    (batch, 1, 1, channels) ((batch, channels, 1, 1) for channels_first)."""
    return _global_avg_pool2d(x, data_format, keepdims, "global_avg_pool2d")


def _global_avg_pool2d(x: Any, data_format: Any, keepdims: bool, caller: str) -> Tensor:
    x = x if isinstance(x, Tensor) else Tensor(x)
    data_format = check_data_format(data_format, caller)
    if x.ndim != 4:
        raise ValueError(f"{caller}: x must have 4 axes {_layout(data_format)} ({data_format}), "
                         f"got shape {x.shape}")
    return x.mean(axis=_spatial_axes(data_format), keepdims=bool(keepdims))


def flatten(x: Tensor, data_format: str = "channels_last") -> Tensor:
    """(batch, ...) to (batch, features), as keras.layers.Flatten.

    channels_first inputs (batch, channels, ...) are first moved to channels_last order
    (batch, ..., channels), as Keras 3 does, so that a model gives the same features in either
    layout. A (batch,) input becomes (batch, 1).
    """
    return _flatten(x, data_format, "flatten")


def _flatten(x: Any, data_format: Any, caller: str) -> Tensor:
    x = x if isinstance(x, Tensor) else Tensor(x)
    data_format = check_data_format(data_format, caller)
    if x.ndim < 1:
        raise ValueError(f"{caller}: x must have at least 1 axis (batch, ...), got shape {x.shape}")
    if data_format == "channels_first" and x.ndim > 2:
        x = x.transpose(0, *range(2, x.ndim), 1)
    return x.reshape((x.shape[0], math.prod(x.shape[1:])))


# ---- the layers ---------------------------------------------------------------------------------

class _Pooling2D(Module):
    """What MaxPooling2D and AveragePooling2D share: the arguments, their checks and shapes."""

    _core: Any = None  # the Function of minigrad.ops.pool

    def __init__(
        self,
        pool_size: int | tuple[int, int] = 2,
        strides: int | tuple[int, int] | None = None,
        padding: str = "valid",
        data_format: str = "channels_last",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        name = type(self).__name__
        self.pool_size = conv_ops.as_pair(pool_size, "pool_size", name)
        # As Keras: strides=None is the pool_size, and the config holds that pair.
        self.strides = self.pool_size if strides is None else conv_ops.as_pair(strides, "strides", name)
        self.padding = conv_ops.check_padding(padding, name)
        self.data_format = check_data_format(data_format, name)

    def _check_rank(self, shape: tuple[int | None, ...]) -> None:
        if len(shape) != 4:
            raise ValueError(f"{type(self).__name__}: expected inputs with 4 axes "
                             f"{_layout(self.data_format)} ({self.data_format}), got shape {tuple(shape)}")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.compute_output_shape(input_shape)  # a bad shape fails here, leaving the layer unbuilt
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        self._check_rank(input_shape)
        spatial = tuple(input_shape[i] for i in _spatial_axes(self.data_format))
        _, (height, width) = pool_ops.pool_geometry(spatial, self.pool_size, self.strides, self.padding,
                                                    type(self).__name__)
        if self.data_format == "channels_last":
            return (input_shape[0], height, width, input_shape[3])
        return (input_shape[0], input_shape[1], height, width)

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        self._check_rank(x.shape)
        return _pool(self._core, x, self.pool_size, self.strides, self.padding, self.data_format,
                     type(self).__name__)

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}, strides={self.strides}, padding={self.padding!r}"


class MaxPooling2D(_Pooling2D):
    """Max pooling over 2-D windows, as keras.layers.MaxPooling2D: the largest value of each
    pool_size window, channel by channel.

    The window slides by `strides` (by default its own size, so windows do not overlap). In
    training the gradient of each output goes to the one input that was its window's maximum;
    where several inputs tie, to the first of them, row by row from the top-left corner (see
    minigrad.ops.pool). No weights.

    Args:
        pool_size: the window's (height, width): a positive int for a square window or a pair
            of positive ints. Default 2.
        strides: the step between windows, (along the height, along the width): an int or a
            pair, each >= 1, or None for the pool_size (as Keras; get_config() then holds the
            pool_size). Default None.
        padding: "valid" (no padding: windows that do not fit are dropped) or "same" (the
            output has ceil(size / stride) pixels; as TensorFlow the odd padded pixel goes at
            the bottom and right, and padded positions never win the maximum). Any case.
            Default "valid".
        data_format: "channels_last" (inputs (batch, height, width, channels)) or
            "channels_first" (inputs (batch, channels, height, width)). Default "channels_last".
        dtype: a Module argument; the layer keeps its input's dtype. Default "float32".
        trainable: a Module argument (the layer has no weights). Default True.

    Call arguments:
        x: a 4-D Tensor (or array) in data_format's layout.
        training: unused (pooling is the same in training and inference).

    Input shape:
        (batch_size, height, width, channels) for channels_last,
        (batch_size, channels, height, width) for channels_first.

    Output shape:
        (batch_size, new_height, new_width, channels) for channels_last (channels first after
        the batch for channels_first), new_height = ceil(height / stride) for "same" and
        floor((height - pool_height) / stride) + 1 for "valid" (the same for the width).

    Example:

        >>> import numpy as np
        >>> import minigrad as mg
        >>> from minigrad.nn.pooling import MaxPooling2D
        >>> x = mg.Tensor(np.arange(16.0).reshape(1, 4, 4, 1))
        >>> MaxPooling2D()(x).numpy()[0, :, :, 0]
        array([[ 5.,  7.],
               [13., 15.]])
        >>> MaxPooling2D(3, strides=2, padding="same")(mg.ones((2, 5, 5, 3))).shape
        (2, 3, 3, 3)
        >>> MaxPooling2D((2, 1), data_format="channels_first")(mg.ones((1, 3, 6, 4))).shape
        (1, 3, 3, 4)
    """

    _core = pool_ops.MaxPool2D


class AveragePooling2D(_Pooling2D):
    """Average pooling over 2-D windows, as keras.layers.AveragePooling2D: the mean of each
    pool_size window, channel by channel.

    The window slides by `strides` (by default its own size). With padding="same", a window
    that hangs over the edge averages only the real pixels it covers (as Keras and TensorFlow;
    PyTorch's avg_pool2d divides by the whole window unless count_include_pad=False). No
    weights.

    Args:
        pool_size: the window's (height, width): a positive int for a square window or a pair
            of positive ints. Default 2, as MaxPooling2D's (Keras 3's AveragePooling2D has no
            default).
        strides: the step between windows, (along the height, along the width): an int or a
            pair, each >= 1, or None for the pool_size (as Keras; get_config() then holds the
            pool_size). Default None.
        padding: "valid" (no padding: windows that do not fit are dropped) or "same" (the
            output has ceil(size / stride) pixels; as TensorFlow the odd padded pixel goes at
            the bottom and right, and padded pixels are not counted). Any case. Default "valid".
        data_format: "channels_last" (inputs (batch, height, width, channels)) or
            "channels_first" (inputs (batch, channels, height, width)). Default "channels_last".
        dtype: a Module argument; the layer keeps its input's dtype. Default "float32".
        trainable: a Module argument (the layer has no weights). Default True.

    Call arguments:
        x: a 4-D Tensor (or array) in data_format's layout.
        training: unused (pooling is the same in training and inference).

    Input shape:
        (batch_size, height, width, channels) for channels_last,
        (batch_size, channels, height, width) for channels_first.

    Output shape:
        (batch_size, new_height, new_width, channels) for channels_last (channels first after
        the batch for channels_first), new_height = ceil(height / stride) for "same" and
        floor((height - pool_height) / stride) + 1 for "valid" (the same for the width).

    Example:

        >>> import numpy as np
        >>> import minigrad as mg
        >>> from minigrad.nn.pooling import AveragePooling2D
        >>> x = mg.Tensor(np.arange(9.0).reshape(1, 3, 3, 1))
        >>> AveragePooling2D(2, padding="same")(x).numpy()[0, :, :, 0]
        array([[2. , 3.5],
               [6.5, 8. ]])
        >>> AveragePooling2D((3, 2), strides=1, data_format="channels_first")(mg.ones((1, 2, 5, 5))).shape
        (1, 2, 3, 4)
    """

    _core = pool_ops.AvgPool2D


class GlobalAveragePooling2D(Module):
    """The mean of each channel over the whole image, as keras.layers.GlobalAveragePooling2D.

    A common last step of a convolutional network: one number per channel, whatever the
    image's size. No weights.

    Args:
        data_format: "channels_last" (inputs (batch, height, width, channels)) or
            "channels_first" (inputs (batch, channels, height, width)). Default "channels_last".
        keepdims: whether to keep height and width as axes of size 1. Default False.
        dtype: a Module argument; the layer keeps its input's dtype. Default "float32".
        trainable: a Module argument (the layer has no weights). Default True.

    Call arguments:
        x: a 4-D Tensor (or array) in data_format's layout.
        training: unused.

    Input shape:
        (batch_size, height, width, channels) for channels_last,
        (batch_size, channels, height, width) for channels_first.

    Output shape:
        (batch_size, channels); with keepdims=True (batch_size, 1, 1, channels) for
        channels_last and (batch_size, channels, 1, 1) for channels_first.

    Example:

        >>> import numpy as np
        >>> import minigrad as mg
        >>> from minigrad.nn.pooling import GlobalAveragePooling2D
        >>> x = mg.Tensor(np.arange(8.0).reshape(1, 2, 2, 2))
        >>> GlobalAveragePooling2D()(x).numpy()
        array([[3., 4.]])
        >>> GlobalAveragePooling2D("channels_first", keepdims=True)(mg.ones((2, 3, 5, 4))).shape
        (2, 3, 1, 1)
    """

    def __init__(self, data_format: str = "channels_last", keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(keepdims, bool):
            raise ValueError(f"GlobalAveragePooling2D: keepdims must be True or False, got {keepdims!r}")
        self.data_format = check_data_format(data_format, "GlobalAveragePooling2D")
        self.keepdims = keepdims

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        if len(input_shape) != 4:
            raise ValueError(f"GlobalAveragePooling2D: expected inputs with 4 axes "
                             f"{_layout(self.data_format)} ({self.data_format}), got shape {tuple(input_shape)}")
        batch, channels = input_shape[0], input_shape[3 if self.data_format == "channels_last" else 1]
        if not self.keepdims:
            return (batch, channels)
        return (batch, 1, 1, channels) if self.data_format == "channels_last" else (batch, channels, 1, 1)

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        return _global_avg_pool2d(x, self.data_format, self.keepdims, "GlobalAveragePooling2D")

    def extra_repr(self) -> str:
        return f"data_format={self.data_format!r}, keepdims={self.keepdims}"


class Flatten(Module):
    """(batch, ...) to (batch, features), as keras.layers.Flatten: between the convolutions and
    the Dense layers of a network. The batch axis is kept; a (batch,) input becomes (batch, 1).

    For channels_first inputs the channel axis is moved last before flattening, as Keras 3
    does, so the features come in channels_last order (pixel by pixel, the channels of a
    pixel together) in either layout: a model's Dense weights then fit both. No weights.

    Args:
        data_format: "channels_last" (inputs (batch, ..., channels)) or "channels_first"
            (inputs (batch, channels, ...)). Default "channels_last".
        dtype: a Module argument; the layer keeps its input's dtype. Default "float32".
        trainable: a Module argument (the layer has no weights). Default True.

    Call arguments:
        x: a Tensor (or array) with at least the batch axis.
        training: unused.

    Input shape:
        (batch_size, ...), any number of axes after the batch.

    Output shape:
        (batch_size, the product of the other axes' sizes).

    Example:

        >>> import numpy as np
        >>> import minigrad as mg
        >>> from minigrad.nn.pooling import Flatten
        >>> Flatten()(mg.ones((2, 3, 4, 5))).shape
        (2, 60)
        >>> x = mg.Tensor(np.arange(8.0).reshape(1, 2, 2, 2))  # (batch, channels, height, width)
        >>> Flatten("channels_first")(x).numpy()
        array([[0., 4., 1., 5., 2., 6., 3., 7.]])
    """

    def __init__(self, data_format: str = "channels_last", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, "Flatten")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        if len(input_shape) < 1:
            raise ValueError(f"Flatten: expected inputs with at least 1 axis (batch, ...), "
                             f"got shape {tuple(input_shape)}")
        rest = input_shape[1:]
        return (input_shape[0], None if any(size is None for size in rest) else math.prod(rest))

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        return _flatten(x, self.data_format, "Flatten")

    def extra_repr(self) -> str:
        return f"data_format={self.data_format!r}"

"""Conv2D, the 2-D convolution layer, and conv2d, its functional form (with bias and data_format).

The arithmetic, its gradients and the padding rule live in minigrad.ops.conv; this file
checks the arguments, moves channels_first data to channels_last and back, and holds weights.
"""

from __future__ import annotations

from typing import Any, Callable

from minigrad.nn.module import Module
from minigrad.ops import conv as conv_ops
from minigrad.tensor import Tensor

DATA_FORMATS = ("channels_last", "channels_first")


def check_data_format(data_format: Any, caller: str) -> str:
    """"channels_last" (NHWC) or "channels_first" (NCHW), any case (as Keras), lowercased."""
    if not isinstance(data_format, str) or data_format.lower() not in DATA_FORMATS:
        raise ValueError(f"{caller}: data_format must be one of "
                         f"{', '.join(map(repr, DATA_FORMATS))}, got {data_format!r}")
    return data_format.lower()


def conv2d(
    x: Tensor,
    kernel: Tensor,
    bias: Tensor | None = None,
    strides: int | tuple[int, int] = 1,
    padding: str = "valid",
    data_format: str = "channels_last",
    dilation_rate: int | tuple[int, int] = 1,
) -> Tensor:
    """The 2-D convolution of x with a (kh, kw, in, out) kernel, plus a bias (out,).

    What keras.layers.Conv2D computes before its activation. x is (N, H, W, in) for
    data_format="channels_last" and (N, in, H, W) for "channels_first"; the result has the
    same layout with `out` channels. padding="same" pads as TensorFlow does, the odd pixel at
    the bottom and right (see minigrad.ops.conv). Arrays are accepted for x, kernel and bias.
    """
    x = x if isinstance(x, Tensor) else Tensor(x)
    kernel = kernel if isinstance(kernel, Tensor) else Tensor(kernel)
    data_format = check_data_format(data_format, "conv2d")
    if x.ndim != 4:
        layout = "(batch, height, width, channels)" if data_format == "channels_last" else \
            "(batch, channels, height, width)"
        raise ValueError(f"conv2d: x must have 4 axes {layout}, got shape {x.shape}")
    if bias is not None:
        bias = bias if isinstance(bias, Tensor) else Tensor(bias)
        if kernel.ndim == 4 and bias.shape != (kernel.shape[3],):
            raise ValueError(f"conv2d: bias must have shape ({kernel.shape[3]},), one value per output "
                             f"channel of the kernel (shape {kernel.shape}), got shape {bias.shape}")
    if data_format == "channels_first":
        x = x.transpose(0, 2, 3, 1)  # the core works on channels_last
    y = conv_ops.conv2d(x, kernel, strides, padding, dilation_rate)
    if bias is not None:
        y = y + bias
    return y.transpose(0, 3, 1, 2) if data_format == "channels_first" else y


# Conv2D imports minigrad.nn.layers inside its methods, not above: minigrad.nn.functional (which
# layers imports) re-exports conv2d from this module, and layers builds its ACTIVATIONS table
# from functional at import time.


class Conv2D(Module):
    """A 2-D convolution layer, as keras.layers.Conv2D: y = activation(conv2d(x, kernel) + bias).

    Each of the `filters` outputs at a pixel is the sum, over a kernel_size window of the
    input around it and over every input channel, of the inputs times the kernel's weights
    (a cross-correlation, as in every framework). The number of input channels is read from
    the first input, so Conv2D(16, 3) needs no input size. Keras refuses strides > 1 together
    with dilation_rate > 1; this layer computes that case too (as PyTorch does).

    Args:
        filters: the number of output channels, a positive int.
        kernel_size: the window's (height, width): a positive int for a square window or a
            pair of positive ints.
        strides: the step between windows, (along the height, along the width): an int or a
            pair, each >= 1. Default 1.
        padding: "valid" (no padding: the output shrinks by the window's size minus one) or
            "same" (zeros around the input so that the output has ceil(size / stride) pixels;
            as TensorFlow, the odd padded pixel goes at the bottom and right; PyTorch's
            padding=p is symmetric and differs there). Any case. Default "valid".
        data_format: "channels_last" (inputs (batch, height, width, channels)) or
            "channels_first" (inputs (batch, channels, height, width)). Default "channels_last".
        dilation_rate: the spacing between the kernel's taps (an "atrous" convolution: a
            3 x 3 kernel with dilation 2 covers 5 x 5 pixels): an int or a pair, each >= 1.
            Default 1.
        activation: applied to conv2d(x, kernel) + bias: "relu", "sigmoid", "linear" or None
            (no activation), or any callable on a Tensor. Default None.
        use_bias: whether to add a bias, one value per filter. Default True.
        kernel_initializer: how the kernel's values are drawn: a name from
            minigrad.nn.initializers, an initializer, its config dict, or a callable(shape,
            dtype). The fans count the window, as Keras does: fan_in = kh * kw * in.
            Default "glorot_uniform".
        bias_initializer: the same for the bias. Default "zeros".
        kernel_regularizer: a penalty on the kernel that regularization_loss() adds up: a
            name ("l2"), a callable or None. Default None.
        bias_regularizer: the same for the bias. Default None.
        kernel_constraint: applied to the kernel after each optimizer step: a name
            ("non_neg", "unit_norm"), a callable or None. Default None.
        bias_constraint: the same for the bias. Default None.
        dtype: the weights' float dtype (a Module argument). Default "float32".
        trainable: False freezes the layer (a Module argument). Default True.

    Call arguments:
        x: a 4-D Tensor (or array) in data_format's layout, with the channel count the layer
            was built for.
        training: unused (a convolution is the same in training and inference); accepted
            like every layer's.

    Input shape:
        (batch_size, height, width, channels) for channels_last,
        (batch_size, channels, height, width) for channels_first.

    Output shape:
        (batch_size, new_height, new_width, filters) for channels_last (filters first after
        the batch for channels_first), new_height = ceil(height / stride) for "same" and
        floor((height - (kh - 1) * dilation - 1) / stride) + 1 for "valid" (the same for the width).

    Weights, created on the first call (or by build(input_shape)):
        kernel: shape (kh, kw, channels, filters), trainable, as Keras's.
        bias: shape (filters,), trainable; only with use_bias=True, else bias is None.

    Example:

        >>> import minigrad as mg
        >>> from minigrad.nn.conv import Conv2D
        >>> layer = Conv2D(8, 3, strides=2, padding="same", activation="relu")
        >>> y = layer(mg.ones((2, 9, 9, 3)))
        >>> y.shape
        (2, 5, 5, 8)
        >>> layer.kernel.shape, layer.bias.shape
        ((3, 3, 3, 8), (8,))
        >>> Conv2D(4, (3, 2), data_format="channels_first")(mg.ones((1, 3, 6, 6))).shape
        (1, 4, 4, 5)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str = "valid",
        data_format: str = "channels_last",
        dilation_rate: int | tuple[int, int] = 1,
        activation: str | Callable[[Tensor], Tensor] | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"Conv2D: filters must be a positive int, got {filters!r}")
        from minigrad.nn.layers import resolve_activation, resolve_weight_options  # here: see above Conv2D

        activation = resolve_activation("Conv2D", activation)
        self.filters = filters
        self.kernel_size = conv_ops.as_pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = conv_ops.as_pair(strides, "strides", "Conv2D")
        self.padding = conv_ops.check_padding(padding, "Conv2D")
        self.data_format = check_data_format(data_format, "Conv2D")
        self.dilation_rate = conv_ops.as_pair(dilation_rate, "dilation_rate", "Conv2D")
        self.activation = activation
        self.use_bias = use_bias
        resolve_weight_options(self, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                               kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                               kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        self.kernel: Tensor | None = None
        self.bias: Tensor | None = None
        self.in_channels: int | None = None

    def _channel_axis(self) -> int:
        return 3 if self.data_format == "channels_last" else 1

    def _check_rank(self, shape: tuple[int | None, ...]) -> None:
        if len(shape) != 4:
            layout = "(batch, height, width, channels)" if self.data_format == "channels_last" else \
                "(batch, channels, height, width)"
            raise ValueError(f"Conv2D: expected inputs with 4 axes {layout} ({self.data_format}), "
                             f"got shape {tuple(shape)}")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self._check_rank(input_shape)
        channels = input_shape[self._channel_axis()]
        if channels is None:
            raise ValueError(f"Conv2D: cannot build for input shape {tuple(input_shape)}; the channel "
                             f"axis ({self._channel_axis()}, {self.data_format}) must be known")
        self.compute_output_shape(input_shape)  # a kernel too large fails here, before any weight
        self.in_channels = int(channels)
        self.add_weight("kernel", self.kernel_size + (self.in_channels, self.filters),
                        self.kernel_initializer, regularizer=self.kernel_regularizer,
                        constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        self._check_rank(input_shape)
        spatial = (1, 2) if self.data_format == "channels_last" else (2, 3)
        _, (height, width) = conv_ops.output_geometry(
            tuple(input_shape[i] for i in spatial), self.kernel_size, self.strides, self.padding,
            self.dilation_rate, "Conv2D")
        if self.data_format == "channels_last":
            return (input_shape[0], height, width, self.filters)
        return (input_shape[0], self.filters, height, width)

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        self._check_rank(x.shape)
        if x.shape[self._channel_axis()] != self.in_channels:
            raise ValueError(
                f"Conv2D(filters={self.filters}) was built for inputs with {self.in_channels} "
                f"channels on axis {self._channel_axis()} ({self.data_format}), but got input "
                f"shape {x.shape}"
            )
        y = conv2d(x, self.kernel, self.bias, self.strides, self.padding, self.data_format,
                   self.dilation_rate)
        return y if self.activation is None else self.activation(y)

    def config_value(self, name: str) -> Any:
        """As Module's, but the activation by its name, as Keras ("linear" for None)."""
        from minigrad.nn.layers import activation_name  # here: see above Conv2D

        return activation_name(self) if name == "activation" else super().config_value(name)

    def extra_repr(self) -> str:
        return (f"filters={self.filters}, kernel_size={self.kernel_size}, strides={self.strides}, "
                f"padding={self.padding!r}, in_channels={self.in_channels}")

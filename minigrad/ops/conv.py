"""2-D convolution (NHWC, kernel (kh, kw, in, out)) and its two adjoints, each a Function.

How the forward pass works (im2col). Pad the input, then look at it through every window the
kernel visits: `sliding_window_view` gives, without copying, an array of shape
(N, H_out, W_out, C, kh, kw) whose entry [n, i, j] is the patch under the kernel when its
top-left corner sits at output pixel (i, j). Strides are a step along the window axes
(`[:, ::s_h, ::s_w]`) and dilation a step inside each window (`[..., ::d_h, ::d_w]`). The
convolution is then one matrix product of the patches with the kernel, summing over
(C, kh, kw): y[n, i, j, o] = sum_{c, a, b} patch[n, i, j, c, a, b] kernel[a, b, c, o] (Eq. 1).

How the backward pass works. Eq. 1 is linear in x and linear in the kernel, so each gradient
is the other factor met with the upstream gradient g (shaped like y):
- dl/dkernel[a, b, c, o] = sum_{n, i, j} patch[n, i, j, c, a, b] g[n, i, j, o]: the same
  patches, now contracted with g over the batch and the output pixels (Eq. 2).
- dl/dx: every patch element came from one input pixel, so the patch gradients
  g @ kernel^T are added back to the pixels they were read from, and the padding is cut off
  (Eq. 3). This "scatter-add" is the transposed convolution; written as a loop over the
  kh * kw kernel taps, each tap's g @ kernel[a, b]^T is added to one strided slice of the
  input at once.

Why second derivatives work. All three maps are pieces of one number,
T(x, kernel, g) = sum(g * conv(x, kernel)), linear in each argument: conv is dT/dg,
Conv2DKernelGrad (Eq. 2) is dT/dkernel and Conv2DInputGrad (Eq. 3) is dT/dx. The gradient of
any one of them is therefore made of the other two, so each backward below applies the other
Functions to Tensors; with create_graph=True those applications are recorded, and the
derivatives of derivatives come out of the same three rules, to any order.

Padding follows TensorFlow and Keras. "valid" adds none. "same" makes the output
ceil(H / stride) pixels tall and adds in total
    max((ceil(H / s) - 1) * s + (k - 1) * d + 1 - H, 0)    (Eq. 4)
rows, half above and the odd one below (and likewise columns: the odd one on the right).
PyTorch's padding differs: its padding=p is symmetric (p zeros on every side), so an odd total
(an even kernel, or stride 2 on an even size) cannot be written that way, and a symmetric
guess shifts the result by a pixel; its padding="same" agrees with Eq. 4 but refuses strides.
To reproduce Eq. 4 there, pad with torch.nn.functional.pad(x, (left, right, top, bottom)) and
convolve with padding 0.

No patch array outlives the step that made it: a convolution keeps its im2col matrix from its
forward to its own backward (dl/dkernel needs the same matrix) and hands it on there; the
engine then frees the node. Otherwise the Functions keep only their geometry (a few ints) and,
through autograd, their inputs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minigrad import backend
from minigrad.autograd import Function
from minigrad.tensor import Tensor

PADDINGS = ("valid", "same")


class Geometry(NamedTuple):
    """How the kernel walks over the input: strides, dilation and the zeros padded on."""

    strides: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def _span(kernel_size: int, dilation: int) -> int:
    """How many input pixels a dilated kernel covers along one axis."""
    return (kernel_size - 1) * dilation + 1


def _columns(x: Any, kernel_size: tuple[int, int], geometry: Geometry) -> Any:
    """im2col: the patches as a matrix, one row per output pixel (N * H_out * W_out rows) and
    one column per kernel weight of an output channel, in the kernel's own order (kh, kw, C).

    A copy (the view's strides cannot be flattened), laid out so that the copy reads C, the
    input's contiguous axis, innermost, and so that kernel.reshape(kh * kw * C, out) needs none.
    """
    patches = _patches(x, kernel_size, geometry)  # (N, H_out, W_out, C, kh, kw)
    rows = patches.shape[0] * patches.shape[1] * patches.shape[2]
    return patches.transpose(0, 1, 2, 4, 5, 3).reshape(rows, -1)


def _patches(x: Any, kernel_size: tuple[int, int], geometry: Geometry) -> Any:
    """The view of padded x under every kernel position: shape (N, H_out, W_out, C, kh, kw)."""
    xp = backend.get_array_module(x)
    (top, bottom), (left, right) = geometry.padding
    if top or bottom or left or right:
        x = xp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    (stride_h, stride_w), (dilation_h, dilation_w) = geometry.strides, geometry.dilation
    window = (_span(kernel_size[0], dilation_h), _span(kernel_size[1], dilation_w))
    windows = xp.lib.stride_tricks.sliding_window_view(x, window, axis=(1, 2))
    return windows[:, ::stride_h, ::stride_w, :, ::dilation_h, ::dilation_w]


class Conv2D(Function):
    """y = conv(x, kernel), Eq. 1; x (N, H, W, C), kernel (kh, kw, C, out), y (N, H_out, W_out, out)."""

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry

    def forward(self, x, kernel):
        out_height, out_width = output_size(x.shape, kernel.shape[:2], self.geometry)
        # Kept for this node's backward only, where dl/dkernel needs the same matrix (Eq. 2):
        # the engine frees the node, and so the columns, as soon as its backward has run.
        self.columns = _columns(x, kernel.shape[:2], self.geometry)
        # Eq. 1, einsum "nhwabc,abco->nhwo" as one BLAS matrix product.
        y = self.columns @ kernel.reshape(-1, kernel.shape[3])
        return y.reshape(x.shape[0], out_height, out_width, kernel.shape[3])

    def backward(self, grad):
        x, kernel = self.inputs
        columns, self.columns = self.columns, None  # handed on, not kept
        return (
            Conv2DInputGrad(self.geometry, x.shape).apply(grad, kernel) if x.requires_grad else None,
            Conv2DKernelGrad(self.geometry, kernel.shape[:2], columns).apply(x, grad)
            if kernel.requires_grad else None,
        )


class Conv2DKernelGrad(Function):
    """dl/dkernel from x and the output's gradient g, Eq. 2: the patches contracted with g."""

    def __init__(self, geometry: Geometry, kernel_size: tuple[int, int], columns: Any = None) -> None:
        self.geometry = geometry
        self.kernel_size = tuple(kernel_size)
        self.columns = columns  # the forward's im2col of x, when it has one (first order)

    def forward(self, x, grad):
        columns, self.columns = self.columns, None
        if columns is None:
            columns = _columns(x, self.kernel_size, self.geometry)
        # Eq. 2: the sum over (n, i, j) is a product with the columns transposed (no copy: BLAS
        # reads the transpose), giving (kh * kw * C, out), the kernel's own layout.
        grad_rows = backend.get_array_module(grad).ascontiguousarray(grad).reshape(-1, grad.shape[3])
        summed = columns.T @ grad_rows
        return summed.reshape(*self.kernel_size, x.shape[3], grad.shape[3])

    def backward(self, grad_kernel):
        # sum(h * KernelGrad(x, g)) = T(x, h, g): its gradients are InputGrad(g, h) and conv(x, h).
        x, grad = self.inputs
        return (
            Conv2DInputGrad(self.geometry, x.shape).apply(grad, grad_kernel) if x.requires_grad else None,
            Conv2D(self.geometry).apply(x, grad_kernel) if grad.requires_grad else None,
        )


class Conv2DInputGrad(Function):
    """dl/dx from the output's gradient g and the kernel, Eq. 3: the transposed convolution."""

    def __init__(self, geometry: Geometry, input_shape: tuple[int, ...]) -> None:
        self.geometry = geometry
        self.input_shape = tuple(input_shape)

    def forward(self, grad, kernel):
        xp = backend.get_array_module(grad)
        (stride_h, stride_w), (dilation_h, dilation_w) = self.geometry.strides, self.geometry.dilation
        (top, bottom), (left, right) = self.geometry.padding
        batch, height, width, channels = self.input_shape
        out_height, out_width = grad.shape[1:3]
        # One row per output pixel. Contiguous first: an upstream gradient may be a broadcast
        # view (that of a sum has strides 0), which BLAS cannot take.
        grad_rows = xp.ascontiguousarray(grad).reshape(-1, grad.shape[3])
        padded = xp.zeros((batch, height + top + bottom, width + left + right, channels),
                          dtype=xp.result_type(grad, kernel))
        # Eq. 3: tap (a, b) of every window read the padded pixels (a d_h + i s_h, b d_w + j s_w),
        # so what that tap's weights received, g @ kernel[a, b]^T, goes back there; windows
        # overlap, hence +=. One product per tap keeps each addition contiguous.
        for a in range(kernel.shape[0]):
            rows = slice(a * dilation_h, a * dilation_h + (out_height - 1) * stride_h + 1, stride_h)
            for b in range(kernel.shape[1]):
                columns = slice(b * dilation_w, b * dilation_w + (out_width - 1) * stride_w + 1, stride_w)
                tap = grad_rows @ kernel[a, b].T
                padded[:, rows, columns, :] += tap.reshape(batch, out_height, out_width, channels)
        return padded[:, top:top + height, left:left + width, :]

    def backward(self, grad_x):
        # sum(h * InputGrad(g, k)) = T(h, k, g): its gradients are conv(h, k) and KernelGrad(h, g).
        grad, kernel = self.inputs
        return (
            Conv2D(self.geometry).apply(grad_x, kernel) if grad.requires_grad else None,
            Conv2DKernelGrad(self.geometry, kernel.shape[:2]).apply(grad_x, grad)
            if kernel.requires_grad else None,
        )


def output_size(input_shape: tuple[int, ...], kernel_size: tuple[int, int], geometry: Geometry) -> tuple[int, int]:
    """(H_out, W_out) of a convolution of an (N, H, W, C) input with this geometry."""
    sizes = []
    for size, k, stride, dilation, (before, after) in zip(input_shape[1:3], kernel_size, geometry.strides,
                                                         geometry.dilation, geometry.padding):
        sizes.append((size + before + after - _span(k, dilation)) // stride + 1)
    return sizes[0], sizes[1]


# ---- the arguments, checked and resolved -------------------------------------------------------

def as_pair(value: Any, name: str, caller: str) -> tuple[int, int]:
    """An int or a pair of ints, each >= 1, as a pair (kernel_size, strides, dilation_rate)."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        valid = len(pair) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                       for v in pair)
    except TypeError:  # not a sequence
        valid = False
    if not valid:
        raise ValueError(f"{caller}: {name} must be a positive int or a pair of positive ints "
                         f"(height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def check_padding(padding: Any, caller: str) -> str:
    """"valid" or "same" (any case, as Keras), lowercased."""
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(f"{caller}: padding must be one of {', '.join(map(repr, PADDINGS))}, "
                         f"got {padding!r}")
    return padding.lower()


def padding_amounts(padding: str, size: int, kernel_size: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after): the zeros added on each side of one spatial axis of `size` pixels."""
    if padding == "valid":
        return 0, 0
    out_size = -(-size // stride)  # ceil(size / stride)
    total = max((out_size - 1) * stride + _span(kernel_size, dilation) - size, 0)  # Eq. 4
    return total // 2, total - total // 2  # the odd pixel after: bottom, right


def output_geometry(
    spatial: tuple[int | None, int | None],
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
    dilation: tuple[int, int],
    caller: str,
) -> tuple[Geometry, tuple[int | None, int | None]]:
    """The Geometry and the output's (H_out, W_out) for an input of (H, W) pixels.

    An unknown size (None) stays unknown, with no padding; a kernel that does not fit into the
    padded input is a ValueError naming the axis.
    """
    pads, out = [], []
    for axis, size, k, s, d in zip(("height", "width"), spatial, kernel_size, strides, dilation):
        if size is None:
            pads.append((0, 0))
            out.append(None)
            continue
        before, after = padding_amounts(padding, size, k, s, d)
        padded = size + before + after
        if padded < _span(k, d):
            raise ValueError(
                f"{caller}: the kernel is larger than the input: along the {axis} it covers "
                f"{_span(k, d)} pixels (kernel {k}, dilation {d}) but the input, padded "
                f"{padding!r}, has {padded}"
            )
        pads.append((before, after))
        out.append((padded - _span(k, d)) // s + 1)
    return Geometry(tuple(strides), tuple(dilation), tuple(pads)), tuple(out)


def conv2d(
    x: Tensor,
    kernel: Tensor,
    strides: Any = 1,
    padding: str = "valid",
    dilation_rate: Any = 1,
) -> Tensor:
    """The 2-D convolution of NHWC x with a (kh, kw, in, out) kernel: (N, H_out, W_out, out).

    A cross-correlation (the kernel is not flipped), as in every framework. No bias and no
    data_format: minigrad.nn.conv.conv2d adds those.
    """
    strides = as_pair(strides, "strides", "conv2d")
    dilation_rate = as_pair(dilation_rate, "dilation_rate", "conv2d")
    padding = check_padding(padding, "conv2d")
    if x.ndim != 4:
        raise ValueError(f"conv2d: x must have 4 axes (batch, height, width, channels), got shape {x.shape}")
    if kernel.ndim != 4 or min(kernel.shape[:2]) < 1:
        raise ValueError(f"conv2d: kernel must have 4 axes (height, width, in_channels, out_channels), "
                         f"its height and width at least 1, got shape {kernel.shape}")
    if x.shape[3] != kernel.shape[2]:
        raise ValueError(f"conv2d: x has {x.shape[3]} channels (shape {x.shape}) but the kernel takes "
                         f"{kernel.shape[2]} (shape {kernel.shape}); they must be equal")
    geometry, _ = output_geometry(x.shape[1:3], kernel.shape[:2], strides, padding, dilation_rate, "conv2d")
    return Conv2D(geometry).apply(x, kernel)

"""2-D max and average pooling (NHWC), each a Function beside the Functions of its backward.

How the forward pass works. As for the convolution (minigrad.ops.conv), pad the input and
look at it through every window: `sliding_window_view` gives, without copying, an array of
shape (N, H_out, W_out, C, pool_h, pool_w) whose entry [n, i, j, c] is the window whose
top-left corner sits at padded pixel (i s_h, j s_w) of channel c. Pooling then reduces each
window on its own, channel by channel:
    max pooling:      y[n, i, j, c] = max of window[n, i, j, c]                     (Eq. 1)
    average pooling:  y[n, i, j, c] = sum of window[n, i, j, c] / count[i, j]        (Eq. 2)
where count[i, j] is the number of real (unpadded) pixels in window (i, j).

Padding follows TensorFlow and Keras (minigrad.ops.conv.padding_amounts): "valid" adds none;
"same" makes the output ceil(H / stride) pixels tall, half of the padding above and the odd
pixel below (and on the right). Max pooling pads with -inf, so a padded position never wins;
average pooling pads with zeros and, as Keras and TensorFlow, divides by the number of real
pixels in each window (Eq. 2), not by pool_h * pool_w: a corner window of a 2 x 2 pool that
hangs over the edge averages the pixels it covers. (PyTorch's avg_pool2d divides by the whole
window unless count_include_pad=False, and pads symmetrically.)

How the backward pass works, and why second derivatives work.
- Max pooling. Near x, each window's maximum is one fixed element of it, the "winner", so the
  pooling is locally a selection: y = Gather(x), reading x at the winners. Its gradient is the
  adjoint, Scatter: g[n, i, j, c] is added to the winner of window (i, j) (Eq. 3); overlapping
  windows (stride < pool) may share a winner, hence the add. The winners are a constant of the
  graph (like the arg-max mask of ops.reduce.max): Scatter and Gather are linear and each is
  the other's adjoint, so each one's backward is the other, to any order.
  Ties: the winner is the first maximum in window order, row by row from the top-left corner
  (what argmax returns on the flattened window, and where PyTorch's max_pool2d also sends the
  gradient); the whole gradient goes to that one element.
- Average pooling is linear in x: its backward is its adjoint, AvgPool2DAdjoint, which spreads
  g[n, i, j, c] / count[i, j] over every pixel of window (i, j) (Eq. 4), and the adjoint's
  backward is the pooling again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minigrad import backend
from minigrad.autograd import Function
from minigrad.ops.conv import as_pair, check_padding, padding_amounts
from minigrad.tensor import Tensor


class PoolGeometry(NamedTuple):
    """How the pool walks over the input: its size, its strides and the padding added."""

    pool_size: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def _windows(x: Any, geometry: PoolGeometry, fill: float) -> Any:
    """The view of x, padded with `fill`, under every window: (N, H_out, W_out, C, ph, pw)."""
    xp = backend.get_array_module(x)
    (top, bottom), (left, right) = geometry.padding
    if top or bottom or left or right:
        x = xp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    windows = xp.lib.stride_tricks.sliding_window_view(x, geometry.pool_size, axis=(1, 2))
    stride_h, stride_w = geometry.strides
    return windows[:, ::stride_h, ::stride_w]


def _padded_shape(shape: tuple[int, ...], geometry: PoolGeometry) -> tuple[int, int, int, int]:
    (top, bottom), (left, right) = geometry.padding
    batch, height, width, channels = shape
    return batch, height + top + bottom, width + left + right, channels


def _crop(padded: Any, geometry: PoolGeometry, shape: tuple[int, ...]) -> Any:
    """The real pixels of a padded array: the inverse of padding, for the adjoints."""
    (top, _), (left, _) = geometry.padding
    return padded[:, top:top + shape[1], left:left + shape[2], :]


# ---- max pooling --------------------------------------------------------------------------------

class MaxPool2D(Function):
    """y = the maximum of each window (Eq. 1); x (N, H, W, C), y (N, H_out, W_out, C)."""

    def __init__(self, geometry: PoolGeometry) -> None:
        self.geometry = geometry

    def forward(self, x):
        return _windows(x, self.geometry, -float("inf")).max(axis=(4, 5))

    def backward(self, grad):
        (x,) = self.inputs
        winners = _winners(x.data, self.geometry)
        return (ScatterToWinners(self.geometry, x.shape, winners).apply(grad),)


def _winners(x: Any, geometry: PoolGeometry) -> tuple[Any, ...]:
    """The index (n, row, column, c) into padded x of every window's first maximum.

    Each part broadcasts to the output's shape (N, H_out, W_out, C); rows and columns count
    padded pixels.
    """
    xp = backend.get_array_module(x)
    windows = _windows(x, geometry, -float("inf"))
    batch, out_height, out_width, channels, pool_h, pool_w = windows.shape
    # argmax returns the first maximum of the flattened window: row by row, left to right.
    first_max = windows.reshape(batch, out_height, out_width, channels, pool_h * pool_w).argmax(axis=-1)
    stride_h, stride_w = geometry.strides
    rows = xp.arange(out_height).reshape(1, -1, 1, 1) * stride_h + first_max // pool_w
    columns = xp.arange(out_width).reshape(1, 1, -1, 1) * stride_w + first_max % pool_w
    return (xp.arange(batch).reshape(-1, 1, 1, 1), rows, columns, xp.arange(channels).reshape(1, 1, 1, -1))


class ScatterToWinners(Function):
    """dl/dx of max pooling, Eq. 3: each output's gradient added at its window's winner."""

    def __init__(self, geometry: PoolGeometry, input_shape: tuple[int, ...],
                 winners: tuple[Any, ...]) -> None:
        self.geometry = geometry
        self.input_shape = tuple(input_shape)
        self.winners = winners

    def forward(self, grad):
        xp = backend.get_array_module(grad)
        padded = xp.zeros(_padded_shape(self.input_shape, self.geometry), dtype=grad.dtype)
        backend.add_at(padded, self.winners, grad)  # overlapping windows may share a winner
        return _crop(padded, self.geometry, self.input_shape)

    def backward(self, grad_x):
        return (GatherAtWinners(self.geometry, self.winners).apply(grad_x),)


class GatherAtWinners(Function):
    """x read at the winners: max pooling with its winners held fixed (Scatter's adjoint)."""

    def __init__(self, geometry: PoolGeometry, winners: tuple[Any, ...]) -> None:
        self.geometry = geometry
        self.winners = winners

    def forward(self, x):
        xp = backend.get_array_module(x)
        (top, bottom), (left, right) = self.geometry.padding
        return xp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))[self.winners]

    def backward(self, grad):
        (x,) = self.inputs
        return (ScatterToWinners(self.geometry, x.shape, self.winners).apply(grad),)


# ---- average pooling ----------------------------------------------------------------------------

def _inverse_counts(geometry: PoolGeometry, spatial: tuple[int, int], xp: Any, dtype: Any) -> Any:
    """1 / count[i, j] of Eq. 2, shape (H_out, W_out, 1): one over the real pixels per window."""
    counts = []
    for size, pool, stride, (before, after) in zip(spatial, geometry.pool_size, geometry.strides,
                                                   geometry.padding):
        out_size = (size + before + after - pool) // stride + 1
        starts = xp.arange(out_size) * stride  # in padded pixels; the real ones are [before, before + size)
        counts.append(xp.minimum(starts + pool, before + size) - xp.maximum(starts, before))
    return (1.0 / (counts[0][:, None, None] * counts[1][None, :, None])).astype(dtype)


class AvgPool2D(Function):
    """y = the mean of the real pixels of each window (Eq. 2); x (N, H, W, C)."""

    def __init__(self, geometry: PoolGeometry) -> None:
        self.geometry = geometry

    def forward(self, x):
        xp = backend.get_array_module(x)
        sums = _windows(x, self.geometry, 0.0).sum(axis=(4, 5))
        return sums * _inverse_counts(self.geometry, x.shape[1:3], xp, x.dtype)

    def backward(self, grad):
        return (AvgPool2DAdjoint(self.geometry, self.inputs[0].shape).apply(grad),)


class AvgPool2DAdjoint(Function):
    """dl/dx of average pooling, Eq. 4: g / count spread over every pixel of its window."""

    def __init__(self, geometry: PoolGeometry, input_shape: tuple[int, ...]) -> None:
        self.geometry = geometry
        self.input_shape = tuple(input_shape)

    def forward(self, grad):
        xp = backend.get_array_module(grad)
        share = grad * _inverse_counts(self.geometry, self.input_shape[1:3], xp, grad.dtype)
        padded = xp.zeros(_padded_shape(self.input_shape, self.geometry), dtype=grad.dtype)
        (pool_h, pool_w), (stride_h, stride_w) = self.geometry.pool_size, self.geometry.strides
        out_height, out_width = grad.shape[1:3]
        # Eq. 4, one window position (a, b) at a time: it read the padded pixels
        # (i s_h + a, j s_w + b), so their share goes back there; windows overlap, hence +=.
        for a in range(pool_h):
            rows = slice(a, a + (out_height - 1) * stride_h + 1, stride_h)
            for b in range(pool_w):
                padded[:, rows, b:b + (out_width - 1) * stride_w + 1:stride_w, :] += share
        return _crop(padded, self.geometry, self.input_shape)

    def backward(self, grad_x):
        return (AvgPool2D(self.geometry).apply(grad_x),)


# ---- the arguments, checked and resolved -------------------------------------------------------

def pool_geometry(
    spatial: tuple[int | None, int | None],
    pool_size: Any,
    strides: Any,
    padding: Any,
    caller: str,
) -> tuple[PoolGeometry, tuple[int | None, int | None]]:
    """The PoolGeometry and the output's (H_out, W_out) for an input of (H, W) pixels.

    pool_size and strides are ints or pairs, each >= 1 (strides=None: the pool_size, as
    Keras); padding is "valid" or "same". An unknown size (None) stays unknown; a pool larger
    than the padded input is a ValueError naming the axis.
    """
    pool_size = as_pair(pool_size, "pool_size", caller)
    strides = pool_size if strides is None else as_pair(strides, "strides", caller)
    padding = check_padding(padding, caller)
    pads, out = [], []
    for axis, size, pool, stride in zip(("height", "width"), spatial, pool_size, strides):
        if size is None:
            pads.append((0, 0))
            out.append(None)
            continue
        before, after = padding_amounts(padding, size, pool, stride, 1)
        padded = size + before + after
        if padded < pool:
            raise ValueError(f"{caller}: the pool is larger than the input: along the {axis} it covers "
                             f"{pool} pixels but the input, padded {padding!r}, has {padded}")
        pads.append((before, after))
        out.append((padded - pool) // stride + 1)
    return PoolGeometry(pool_size, strides, tuple(pads)), tuple(out)


def _checked_geometry(x: Tensor, pool_size: Any, strides: Any, padding: Any, caller: str) -> PoolGeometry:
    if x.ndim != 4:
        raise ValueError(f"{caller}: x must have 4 axes (batch, height, width, channels), "
                         f"got shape {x.shape}")
    geometry, _ = pool_geometry(x.shape[1:3], pool_size, strides, padding, caller)
    return geometry


def max_pool2d(x: Tensor, pool_size: Any = 2, strides: Any = None, padding: str = "valid") -> Tensor:
    """The maximum of each (pool_h, pool_w) window of NHWC x: (N, H_out, W_out, C).

    The gradient goes to each window's first maximum (row by row from the top-left). No
    data_format: minigrad.nn.pooling.max_pool2d adds it.
    """
    return MaxPool2D(_checked_geometry(x, pool_size, strides, padding, "max_pool2d")).apply(x)


def avg_pool2d(x: Tensor, pool_size: Any = 2, strides: Any = None, padding: str = "valid") -> Tensor:
    """The mean of each (pool_h, pool_w) window of NHWC x over its real pixels: (N, H_out, W_out, C)."""
    return AvgPool2D(_checked_geometry(x, pool_size, strides, padding, "avg_pool2d")).apply(x)

"""Pooling and Flatten: first and second derivatives (float64, every element, per backend),
outputs and gradients against a direct loop, PyTorch (where installed) and Keras 3, the tie
rule, configs, and misuse."""

import doctest
import inspect
import math

import numpy as np
import pytest

import keras  # noqa: E402  (conftest set KERAS_BACKEND=numpy first)
import minigrad as mg
from conftest import normal
from minigrad.nn.pooling import (AveragePooling2D, Flatten, GlobalAveragePooling2D, MaxPooling2D,
                                 avg_pool2d, flatten, global_avg_pool2d, max_pool2d)
from minigrad.ops import pool as pool_ops

POOLS = {"max": max_pool2d, "avg": avg_pool2d}


def distinct(shape, seed=0):
    """float64 values in [-2, 2), all different and at least 4 / size apart: no ties, even
    after gradcheck's +-eps, so every window has one clear maximum."""
    size = math.prod(shape)
    return np.random.default_rng(seed).permutation(size).reshape(shape) * (4.0 / size) - 2.0


def pair(value):
    return (value, value) if isinstance(value, int) else value


def tf_same_padding(size, pool, stride):
    """TensorFlow's "same" padding of one axis, from its documentation: (before, after)."""
    total = max((math.ceil(size / stride) - 1) * stride + pool - size, 0)
    return total // 2, total - total // 2


def direct_pool(x, kind, pool_size, strides, padding):
    """The definition, one window at a time, NHWC in NumPy: the max, or the mean of the real
    pixels (padding="same" windows clipped to the image, as Keras)."""
    (ph, pw), (sh, sw) = pair(pool_size), pair(strides if strides is not None else pool_size)
    height, width = x.shape[1:3]
    (top, bottom), (left, right) = ((0, 0), (0, 0)) if padding == "valid" else (
        tf_same_padding(height, ph, sh), tf_same_padding(width, pw, sw))
    rows = (height + top + bottom - ph) // sh + 1
    columns = (width + left + right - pw) // sw + 1
    y = np.zeros((x.shape[0], rows, columns, x.shape[3]))
    for i in range(rows):
        for j in range(columns):
            r0, c0 = i * sh - top, j * sw - left
            window = x[:, max(r0, 0):min(r0 + ph, height), max(c0, 0):min(c0 + pw, width)]
            y[:, i, j] = window.max(axis=(1, 2)) if kind == "max" else window.mean(axis=(1, 2))
    return y


# (id, x shape NHWC, pool_size, strides, padding): pools 2 and 3, non-square pools, strides 1
# and 2 (overlapping windows), a stride past the pool (gaps), valid and same (odd padding).
GEOMETRIES = [
    ("2 valid", (2, 4, 6, 2), 2, None, "valid"),
    ("3 valid, a row and column dropped", (1, 7, 8, 2), 3, None, "valid"),
    ("3 stride 1 valid (overlapping)", (1, 5, 5, 2), 3, 1, "valid"),
    ("2 stride 1 same (odd pixel bottom right)", (1, 4, 5, 2), 2, 1, "same"),
    ("3 stride 2 same (overlapping)", (2, 5, 6, 1), 3, 2, "same"),
    ("2 same, odd sizes", (1, 5, 7, 2), 2, None, "same"),
    ("(2, 3) strides (1, 2) same", (1, 5, 7, 2), (2, 3), (1, 2), "same"),
    ("(3, 1) stride 2 valid", (1, 7, 4, 2), (3, 1), 2, "valid"),
    ("2 stride 3 same (gaps)", (1, 7, 5, 1), 2, 3, "same"),
]
IDS = [g[0] for g in GEOMETRIES]


def through(kind, pool_size, strides, padding, data_format="channels_last", then=None):
    def fn(x):
        y = POOLS[kind](x, pool_size, strides, padding, data_format)
        assert y.dtype == np.float64 and y.backend == x.backend
        return y if then is None else then(y)

    return fn


def check_both(fn, inputs, names=None):
    for check in (mg.gradcheck, mg.gradgradcheck):
        report = check(fn, inputs, names=names)
        assert report.passed and report.max_abs_error < 1e-6, str(report)


# ---- first and second derivatives ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("name, x_shape, pool_size, strides, padding", GEOMETRIES, ids=IDS)
def test_gradcheck_and_gradgradcheck(backend, kind, name, x_shape, pool_size, strides, padding):
    check_both(through(kind, pool_size, strides, padding), [distinct(x_shape)], names=["x"])


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("name, x_shape, pool_size, strides, padding",
                         [GEOMETRIES[2], GEOMETRIES[4], GEOMETRIES[6]], ids=[IDS[2], IDS[4], IDS[6]])
def test_gradgradcheck_through_a_nonlinearity(backend, kind, name, x_shape, pool_size, strides, padding):
    # After tanh the upstream gradient depends on x, so the second pass differentiates the
    # backward (ScatterToWinners, AvgPool2DAdjoint) by its gradient argument too.
    fn = through(kind, pool_size, strides, padding, then=lambda y: y.tanh())
    report = mg.gradgradcheck(fn, [distinct(x_shape, 1)], names=["x"])
    assert report.passed and report.max_abs_error < 1e-6, str(report)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool_size, strides, padding", [(2, None, "valid"), (3, 2, "same"), ((2, 3), 1, "same")])
def test_channels_first_gradcheck_and_gradgradcheck(backend, kind, pool_size, strides, padding):
    check_both(through(kind, pool_size, strides, padding, "channels_first"), [distinct((2, 2, 5, 4), 2)])


@pytest.mark.parametrize("name, x_shape, pool_size, strides, padding",
                         [GEOMETRIES[2], GEOMETRIES[4], GEOMETRIES[8]], ids=[IDS[2], IDS[4], IDS[8]])
def test_the_backward_functions_are_differentiable(backend, name, x_shape, pool_size, strides, padding):
    # The Functions of the backward passes checked as functions of their own: their backward
    # rules are the third derivatives of the pooling.
    geometry, out = pool_ops.pool_geometry(x_shape[1:3], pool_size, strides, padding, "test")
    g_shape = (x_shape[0], *out, x_shape[3])
    winners = pool_ops._winners(mg.Tensor(distinct(x_shape, 3)).data, geometry)
    cases = [
        (lambda g: pool_ops.ScatterToWinners(geometry, x_shape, winners).apply(g), normal(g_shape, 5)),
        (lambda h: pool_ops.GatherAtWinners(geometry, winners).apply(h), normal(x_shape, 6)),
        (lambda g: pool_ops.AvgPool2DAdjoint(geometry, x_shape).apply(g), normal(g_shape, 7)),
    ]
    for fn, value in cases:
        check_both(fn, [value])


def test_the_layers_gradcheck(backend):
    for layer in (MaxPooling2D(3, 2, "same"), AveragePooling2D((2, 3), 1, "same", "channels_first"),
                  GlobalAveragePooling2D(keepdims=True), Flatten("channels_first")):
        check_both(lambda x: layer(x).tanh(), [distinct((2, 3, 5, 4), 4)])


def test_the_functional_forms_take_arrays(backend):
    x = distinct((1, 4, 4, 2))
    assert max_pool2d(x).shape == avg_pool2d(x).shape == (1, 2, 2, 2)
    assert global_avg_pool2d(x).shape == (1, 2) and flatten(x).shape == (1, 32)
    assert pool_ops.max_pool2d(mg.Tensor(x), 3, 1).shape == pool_ops.avg_pool2d(mg.Tensor(x), 3, 1).shape \
        == (1, 2, 2, 2)


# ---- outputs against the definition, PyTorch and Keras ------------------------------------------

@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("name, x_shape, pool_size, strides, padding", GEOMETRIES, ids=IDS)
def test_outputs_match_the_direct_loop(backend, kind, name, x_shape, pool_size, strides, padding):
    x = normal(x_shape, 8)
    y = POOLS[kind](mg.Tensor(x), pool_size, strides, padding)
    np.testing.assert_allclose(y.numpy(), direct_pool(x, kind, pool_size, strides, padding),
                               rtol=1e-12, atol=1e-12)


def test_same_average_pooling_divides_by_the_real_pixels():
    # Worked by hand: the 2 x 2 windows of a 3 x 3 image, padded one row below and one column
    # to the right, hold (0, 1, 3, 4), (2, 5), (6, 7) and (8) real pixels.
    x = mg.Tensor(np.arange(9.0).reshape(1, 3, 3, 1))
    expected = [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8 / 1]]
    np.testing.assert_array_equal(avg_pool2d(x, 2, padding="same").numpy()[0, :, :, 0], expected)


def test_same_max_pooling_never_picks_a_padded_position(backend):
    x = mg.Tensor(-1.0 - np.arange(9.0).reshape(1, 3, 3, 1), requires_grad=True)  # all below 0
    y = max_pool2d(x, 2, padding="same")
    np.testing.assert_array_equal(y.numpy()[0, :, :, 0], [[-1.0, -3.0], [-7.0, -9.0]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, :, :, 0], [[1, 0, 1], [0, 0, 0], [1, 0, 1]])


def torch_pool(torch, nchw, kind, pool_size, strides, padding):
    """Our pooling written in PyTorch, TensorFlow's "same" padding made explicit: max pooling of
    the input padded with -inf; average pooling as the sum over the zero-padded window divided
    by the count of real pixels, itself the same sum over a padded tensor of ones."""
    F = torch.nn.functional
    (ph, pw), (sh, sw) = pair(pool_size), pair(strides if strides is not None else pool_size)
    pads = (0, 0, 0, 0)
    if padding == "same":
        (top, bottom), (left, right) = tf_same_padding(nchw.shape[2], ph, sh), tf_same_padding(nchw.shape[3], pw, sw)
        pads = (left, right, top, bottom)
    if kind == "max":
        return F.max_pool2d(F.pad(nchw, pads, value=-math.inf), (ph, pw), (sh, sw))
    sums = F.avg_pool2d(F.pad(nchw, pads), (ph, pw), (sh, sw), divisor_override=1)
    counts = F.avg_pool2d(F.pad(torch.ones_like(nchw), pads), (ph, pw), (sh, sw), divisor_override=1)
    return sums / counts


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("name, x_shape, pool_size, strides, padding", GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_outputs_and_gradients_match_pytorch(kind, name, x_shape, pool_size, strides, padding, data_format):
    torch = pytest.importorskip("torch", reason="PyTorch is optional; the direct loop above always runs")
    x = normal(x_shape, 9)
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2).copy()
    ours = mg.Tensor(x, requires_grad=True)
    y = POOLS[kind](ours, pool_size, strides, padding, data_format)
    upstream = normal(y.shape, 10)
    (y * mg.Tensor(upstream)).sum().backward()

    theirs = torch.tensor(x, requires_grad=True)
    nchw = theirs if data_format == "channels_first" else theirs.permute(0, 3, 1, 2)
    out = torch_pool(torch, nchw, kind, pool_size, strides, padding)
    out = out if data_format == "channels_first" else out.permute(0, 2, 3, 1)
    (out * torch.tensor(upstream)).sum().backward()

    np.testing.assert_allclose(y.numpy(), out.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, pool_size, strides", [((2, 6, 5, 3), 3, 1), ((1, 5, 7, 2), 3, 2),
                                                         ((1, 7, 6, 2), (5, 3), (2, 1))])
def test_same_average_pooling_is_pytorchs_count_include_pad_false_where_the_padding_is_symmetric(
        x_shape, pool_size, strides):
    # An odd pool and these strides pad as many pixels before as after: PyTorch's own
    # symmetric padding, with count_include_pad=False, is then Keras's "same".
    torch = pytest.importorskip("torch", reason="PyTorch is optional; the direct loop above always runs")
    (ph, pw), (sh, sw) = pair(pool_size), pair(strides)
    assert tf_same_padding(x_shape[1], ph, sh) == (ph // 2,) * 2 and tf_same_padding(x_shape[2], pw, sw) == (pw // 2,) * 2
    x = normal(x_shape, 11)
    theirs = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    out = torch.nn.functional.avg_pool2d(theirs, (ph, pw), (sh, sw), padding=(ph // 2, pw // 2),
                                         count_include_pad=False)
    ours = mg.Tensor(x, requires_grad=True)
    y = avg_pool2d(ours, pool_size, strides, "same")
    upstream = normal(y.shape, 12)
    (y * mg.Tensor(upstream)).sum().backward()
    (out * torch.tensor(upstream.transpose(0, 3, 1, 2).copy())).sum().backward()
    np.testing.assert_allclose(y.numpy(), out.detach().permute(0, 2, 3, 1).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-12, atol=1e-12)


KERAS_POOL_CASES = [
    pytest.param((2, 6, 6, 3), dict(), id="2-valid-defaults"),
    pytest.param((2, 7, 5, 3), dict(pool_size=3), id="3-valid-dropped"),
    pytest.param((2, 7, 5, 3), dict(pool_size=2, padding="same"), id="2-same-odd-sizes"),
    pytest.param((2, 7, 8, 2), dict(pool_size=3, strides=2, padding="same"), id="3-same-stride-2"),
    pytest.param((2, 6, 7, 2), dict(pool_size=3, strides=1), id="3-valid-stride-1"),
    pytest.param((1, 8, 7, 2), dict(pool_size=(2, 3), strides=(1, 2), padding="same"), id="2x3-same-strides"),
    pytest.param((1, 7, 7, 1), dict(pool_size=2, strides=3, padding="same"), id="2-same-stride-3"),
    pytest.param((2, 3, 7, 6), dict(pool_size=3, strides=2, padding="same", data_format="channels_first"),
                 id="channels-first-same"),
    pytest.param((2, 3, 7, 6), dict(pool_size=(2, 1), data_format="channels_first"), id="channels-first-valid"),
]


@pytest.mark.parametrize("ours_cls, keras_cls", [(MaxPooling2D, "MaxPooling2D"),
                                                 (AveragePooling2D, "AveragePooling2D")])
@pytest.mark.parametrize("input_shape, options", KERAS_POOL_CASES)
def test_pooling_outputs_match_keras(backend, ours_cls, keras_cls, input_shape, options):
    x = normal(input_shape, 13).astype(np.float32)
    # Keras 3's AveragePooling2D has no default pool_size (its MaxPooling2D has (2, 2)); ours
    # both default to 2.
    reference = getattr(keras.layers, keras_cls)(**{"pool_size": 2, **options})
    expected = np.asarray(reference(x))
    layer = ours_cls(**options)
    y = layer(mg.Tensor(x))
    assert y.shape == expected.shape == layer.compute_output_shape(input_shape) \
        == tuple(reference.compute_output_shape(input_shape))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_average_pooling_matches_keras(backend, data_format, keepdims):
    x = normal((2, 5, 4, 3), 14).astype(np.float32)
    expected = np.asarray(keras.layers.GlobalAveragePooling2D(data_format, keepdims)(x))
    layer = GlobalAveragePooling2D(data_format, keepdims)
    y = layer(mg.Tensor(x))
    assert y.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 4), (2, 6), (3,), (2, 2, 3, 2, 2)])
def test_flatten_matches_keras(backend, data_format, shape):
    # channels_first is moved to channels_last order first: the values come out reordered.
    x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    reference = keras.layers.Flatten(data_format)
    expected = np.asarray(reference(x))
    layer = Flatten(data_format)
    y = layer(mg.Tensor(x))
    assert y.shape == expected.shape == layer.compute_output_shape(shape) \
        == tuple(reference.compute_output_shape(shape))
    np.testing.assert_array_equal(y.numpy(), expected)
    assert Flatten().compute_output_shape((None, 3, None)) == (None, None)


# ---- the tie rule -------------------------------------------------------------------------------

TIED = np.array([[1.0, 3.0, 3.0],
                 [3.0, 0.0, 3.0],
                 [2.0, 3.0, 1.0]])


def test_ties_send_the_gradient_to_the_first_maximum_in_window_order(backend):
    # 2 x 2 windows at stride 1: top-left (1, 3 / 3, 0) ties at (0, 1) and (1, 0); top-right
    # (3, 3 / 0, 3) at (0, 1), (0, 2) and (1, 2); bottom-left (3, 0 / 2, 3) at (1, 0) and (2, 1);
    # bottom-right (0, 3 / 3, 1) at (1, 2) and (2, 1). Row by row from the top-left, the first
    # is (0, 1), (0, 1), (1, 0) and (1, 2).
    x = mg.Tensor(TIED[None, :, :, None], requires_grad=True)
    y = max_pool2d(x, 2, 1)
    np.testing.assert_array_equal(y.numpy()[0, :, :, 0], [[3.0, 3.0], [3.0, 3.0]])
    (y * mg.Tensor(np.array([1.0, 10.0, 100.0, 1000.0]).reshape(1, 2, 2, 1))).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, :, :, 0], [[0, 11, 0], [100, 0, 1000], [0, 0, 0]])
    # A window of equal values sends everything to its top-left corner.
    flat = mg.Tensor(np.ones((1, 4, 4, 1)), requires_grad=True)
    max_pool2d(flat, 2).sum().backward()
    np.testing.assert_array_equal(flat.grad.numpy()[0, :, :, 0],
                                  [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])


def test_ties_go_where_pytorch_sends_them():
    torch = pytest.importorskip("torch", reason="PyTorch is optional; the rule is tested by hand above")
    values = np.round(normal((2, 3, 6, 7), 15))  # few distinct values: many ties
    theirs = torch.tensor(values, requires_grad=True)
    upstream = normal((2, 3, 5, 3), 16)
    (torch.nn.functional.max_pool2d(theirs, (2, 3), (1, 2)) * torch.tensor(upstream)).sum().backward()
    ours = mg.Tensor(values, requires_grad=True)
    (max_pool2d(ours, (2, 3), (1, 2), data_format="channels_first") * mg.Tensor(upstream)).sum().backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


# ---- configs and docstrings ---------------------------------------------------------------------

CONFIG_CASES = [
    (MaxPooling2D, dict(pool_size=(3, 2), strides=1, padding="same", data_format="channels_first")),
    (AveragePooling2D, dict(pool_size=3, padding="valid")),
    (GlobalAveragePooling2D, dict(data_format="channels_first", keepdims=True)),
    (Flatten, dict(data_format="channels_first")),
]


@pytest.mark.parametrize("cls, options", CONFIG_CASES, ids=[c[0].__name__ for c in CONFIG_CASES])
def test_the_config_round_trips_and_agrees_with_keras(cls, options):
    layer = cls(dtype="float64", **options)
    config = layer.get_config()
    rebuilt = cls.from_config(config)
    assert rebuilt.get_config() == config and config["dtype"] == "float64"
    reference = getattr(keras.layers, cls.__name__)(**options).get_config()
    for name in set(config) - {"dtype", "trainable"}:
        assert config[name] == reference[name], name
    assert set(reference) - {"name", "dtype"} == set(config) - {"dtype"}
    x = distinct((1, 6, 6, 6))
    np.testing.assert_array_equal(rebuilt(x).numpy(), layer(x).numpy())


def test_strides_none_is_stored_as_the_pool_size_as_keras():
    assert MaxPooling2D((3, 2)).strides == (3, 2) == tuple(keras.layers.MaxPooling2D((3, 2)).strides)
    assert AveragePooling2D(2, padding="SAME").get_config()["padding"] == "same"


@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten])
def test_the_docstring_documents_every_argument_and_its_example_runs(cls):
    parameters = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                  if p.name != "self" and p.kind != p.VAR_KEYWORD] + ["dtype", "trainable"]
    docstring = inspect.getdoc(cls)
    missing = [name for name in parameters if f"\n    {name}: " not in docstring]
    assert not missing, f"{cls.__name__}'s docstring has no Args entry for {missing}"
    for section in ("Args:", "Call arguments:", "Input shape:", "Output shape:", "Example:"):
        assert section in docstring, section
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder(recurse=False).find(cls, cls.__name__, globs={}):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0


# ---- misuse: a named error, and nothing changed -------------------------------------------------

@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D])
@pytest.mark.parametrize("arguments, message", [
    (dict(pool_size=0), "pool_size must be a positive int or a pair .* got 0"),
    (dict(pool_size=(2,)), "pool_size must be .* got \\(2,\\)"),
    (dict(pool_size=(2, -1)), "pool_size must be .* got \\(2, -1\\)"),
    (dict(strides=0), "strides must be a positive int .* got 0"),
    (dict(strides=(1, 1.5)), "strides must be .* got \\(1, 1.5\\)"),
    (dict(padding="full"), "padding must be one of 'valid', 'same', got 'full'"),
    (dict(data_format="NHWC"), "data_format must be one of 'channels_last', 'channels_first', got 'NHWC'"),
])
def test_bad_pooling_arguments_are_named(cls, arguments, message):
    with pytest.raises(ValueError, match=f"^{cls.__name__}: {message}"):
        cls(**arguments)


def test_bad_global_pooling_and_flatten_arguments_are_named():
    with pytest.raises(ValueError, match="^GlobalAveragePooling2D: data_format must be one of .* got 'NCHW'"):
        GlobalAveragePooling2D("NCHW")
    with pytest.raises(ValueError, match="^GlobalAveragePooling2D: keepdims must be True or False, got 'yes'"):
        GlobalAveragePooling2D(keepdims="yes")
    with pytest.raises(ValueError, match="^Flatten: data_format must be one of .* got None"):
        Flatten(None)


@pytest.mark.parametrize("make", [MaxPooling2D, lambda: AveragePooling2D(data_format="channels_first"),
                                  GlobalAveragePooling2D], ids=["max", "average", "global"])
def test_a_wrong_rank_leaves_the_layer_unbuilt(backend, make):
    layer = make()
    before = layer.get_config()
    with pytest.raises(ValueError, match=rf"^{type(layer).__name__}: expected inputs with 4 axes .* "
                                         r"got shape \(2, 6, 6\)"):
        layer(mg.ones((2, 6, 6)))
    assert not layer.built and layer.get_config() == before
    assert layer(mg.ones((1, 4, 4, 4))).ndim in (2, 4)  # still usable


def test_flatten_refuses_a_scalar_and_stays_unbuilt(backend):
    layer = Flatten()
    with pytest.raises(ValueError, match=r"^Flatten: expected inputs with at least 1 axis .* got shape \(\)"):
        layer(mg.Tensor(np.float64(3.0)))
    assert not layer.built
    with pytest.raises(ValueError, match=r"^flatten: x must have at least 1 axis .* got shape \(\)"):
        flatten(mg.Tensor(np.float64(3.0)))


def test_a_pool_larger_than_the_padded_input_leaves_the_layer_unbuilt(backend):
    layer = MaxPooling2D((2, 3))
    with pytest.raises(ValueError, match="^MaxPooling2D: the pool is larger than the input: along the width it "
                                         "covers 3 pixels but the input, padded 'valid', has 2"):
        layer(mg.ones((1, 4, 2, 1)))
    assert not layer.built
    with pytest.raises(ValueError, match="^AveragePooling2D: .* along the height it covers 3 pixels .* has 2"):
        AveragePooling2D(3, data_format="channels_first")(mg.ones((1, 1, 2, 5)))
    # "same" pads up to the pool: the same input then works.
    assert MaxPooling2D((2, 3), padding="same")(mg.ones((1, 4, 2, 1))).shape == (1, 2, 1, 1)
    assert avg_pool2d(mg.ones((1, 2, 2, 1)), 3, padding="same").shape == (1, 1, 1, 1)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_bad_functional_arguments_are_named(backend, kind):
    fn, name = POOLS[kind], f"{kind}_pool2d"
    x = mg.ones((1, 5, 5, 2))
    with pytest.raises(ValueError, match=rf"^{name}: x must have 4 axes .* got shape \(5, 5, 2\)"):
        fn(mg.ones((5, 5, 2)))
    with pytest.raises(ValueError, match=rf"^{name}: x must have 4 axes \(batch, channels, height, width\)"):
        fn(mg.ones((5, 5, 2)), data_format="channels_first")
    with pytest.raises(ValueError, match=rf"^{name}: pool_size must be .* got -2"):
        fn(x, -2)
    with pytest.raises(ValueError, match=rf"^{name}: strides must be .* got \(0, 1\)"):
        fn(x, 2, (0, 1))
    with pytest.raises(ValueError, match=rf"^{name}: padding must be one of .* got 'causal'"):
        fn(x, padding="causal")
    with pytest.raises(ValueError, match=rf"^{name}: data_format must be one of .* got 'NCHW'"):
        fn(x, data_format="NCHW")
    with pytest.raises(ValueError, match=rf"^{name}: the pool is larger than the input"):
        fn(x, 6)
    with pytest.raises(ValueError, match=rf"^{name}: x must have 4 axes .* got shape \(5, 5\)"):
        getattr(pool_ops, name)(mg.ones((5, 5)))
    with pytest.raises(ValueError, match=r"^global_avg_pool2d: x must have 4 axes .* got shape \(5, 5, 2\)"):
        global_avg_pool2d(mg.ones((5, 5, 2)))

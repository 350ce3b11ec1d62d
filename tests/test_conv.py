"""Conv2D: first and second derivatives (float64, every element, per backend), outputs and
gradients against a direct loop, PyTorch (where installed) and Keras 3, configs, and misuse."""

import doctest
import inspect
import math

import numpy as np
import pytest

import keras  # noqa: E402  (conftest set KERAS_BACKEND=numpy first)
import minigrad as mg
from conftest import normal
from minigrad.nn.conv import Conv2D, conv2d
from minigrad.ops import conv as conv_ops


def tf_same_padding(size, kernel, stride, dilation):
    """TensorFlow's "same" padding of one axis, from its documentation: (before, after)."""
    span = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def direct_conv(x, kernel, bias, strides, padding, dilation):
    """The definition, one output pixel at a time, NHWC in NumPy (the reference of last resort)."""
    (sh, sw), (dh, dw) = strides, dilation
    kh, kw, _, out = kernel.shape
    pads = [(0, 0), (0, 0)] if padding == "valid" else [
        tf_same_padding(x.shape[1], kh, sh, dh), tf_same_padding(x.shape[2], kw, sw, dw)]
    padded = np.pad(x, [(0, 0), *pads, (0, 0)])
    rows = (padded.shape[1] - (kh - 1) * dh - 1) // sh + 1
    columns = (padded.shape[2] - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((x.shape[0], rows, columns, out))
    for i in range(rows):
        for j in range(columns):
            for a in range(kh):
                for b in range(kw):
                    y[:, i, j] += padded[:, i * sh + a * dh, j * sw + b * dw] @ kernel[a, b]
    return y if bias is None else y + bias


# (id, x shape NHWC, kernel shape, strides, padding, dilation): odd, even and non-square kernels,
# strides 1 and 2, valid and same, dilation 2, and strides with dilation together.
GEOMETRIES = [
    ("3x3 valid", (2, 5, 5, 2), (3, 3, 2, 3), 1, "valid", 1),
    ("3x3 same stride 2", (1, 6, 5, 2), (3, 3, 2, 2), 2, "same", 1),
    ("2x2 same (even, odd pixel bottom right)", (1, 5, 4, 2), (2, 2, 2, 3), 1, "same", 1),
    ("2x2 valid stride 2", (2, 5, 6, 1), (2, 2, 1, 2), 2, "valid", 1),
    ("2x3 same strides (2, 1)", (1, 5, 6, 2), (2, 3, 2, 2), (2, 1), "same", 1),
    ("1x3 valid", (1, 4, 5, 3), (1, 3, 3, 2), 1, "valid", 1),
    ("3x3 valid dilation 2", (1, 6, 7, 2), (3, 3, 2, 2), 1, "valid", 2),
    ("2x2 same dilation 2", (1, 5, 5, 2), (2, 2, 2, 2), 1, "same", 2),
    ("3x2 same dilation (2, 1)", (1, 6, 5, 1), (3, 2, 1, 2), 1, "same", (2, 1)),
    ("3x3 valid stride 2 dilation 2", (1, 7, 7, 2), (3, 3, 2, 2), 2, "valid", 2),
]
IDS = [g[0] for g in GEOMETRIES]


def pair(value):
    return (value, value) if isinstance(value, int) else value


def conv_inputs(x_shape, kernel_shape, seed=0):
    return [normal(x_shape, seed), normal(kernel_shape, seed + 1), normal(kernel_shape[3], seed + 2)]


def through_conv2d(strides, padding, dilation, data_format="channels_last", then=None):
    def fn(x, kernel, bias):
        y = conv2d(x, kernel, bias, strides, padding, data_format, dilation)
        assert y.dtype == np.float64 and y.backend == x.backend
        return y if then is None else then(y)

    return fn


# ---- first and second derivatives ---------------------------------------------------------------

@pytest.mark.parametrize("name, x_shape, kernel_shape, strides, padding, dilation", GEOMETRIES, ids=IDS)
def test_gradcheck_and_gradgradcheck(backend, name, x_shape, kernel_shape, strides, padding, dilation):
    # gradgradcheck on (x, kernel, bias) differentiates dl/dx by the kernel and dl/dkernel by x:
    # the mixed second derivatives, through Conv2DInputGrad and Conv2DKernelGrad.
    fn = through_conv2d(strides, padding, dilation)
    for check in (mg.gradcheck, mg.gradgradcheck):
        report = check(fn, conv_inputs(x_shape, kernel_shape), names=["x", "kernel", "bias"])
        assert report.passed and report.max_abs_error < 1e-6, str(report)


@pytest.mark.parametrize("name, x_shape, kernel_shape, strides, padding, dilation",
                         [GEOMETRIES[1], GEOMETRIES[2], GEOMETRIES[9]], ids=[IDS[1], IDS[2], IDS[9]])
def test_gradgradcheck_through_a_nonlinearity(backend, name, x_shape, kernel_shape, strides, padding,
                                              dilation):
    # After tanh the upstream gradient depends on x and the kernel, so the second pass also
    # differentiates the adjoints by their gradient argument.
    fn = through_conv2d(strides, padding, dilation, then=lambda y: y.tanh())
    report = mg.gradgradcheck(fn, conv_inputs(x_shape, kernel_shape), names=["x", "kernel", "bias"])
    assert report.passed and report.max_abs_error < 1e-6, str(report)


@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "same"), (2, "valid")])
def test_channels_first_gradcheck_and_gradgradcheck(backend, strides, padding):
    fn = through_conv2d(strides, padding, 1, data_format="channels_first")
    inputs = [normal((2, 2, 5, 4)), normal((3, 2, 2, 2), 1), normal(2, 2)]
    for check in (mg.gradcheck, mg.gradgradcheck):
        report = check(fn, inputs, names=["x", "kernel", "bias"])
        assert report.passed and report.max_abs_error < 1e-6, str(report)


@pytest.mark.parametrize("name, x_shape, kernel_shape, strides, padding, dilation",
                         [GEOMETRIES[1], GEOMETRIES[4], GEOMETRIES[9]], ids=[IDS[1], IDS[4], IDS[9]])
def test_the_adjoints_are_differentiable_in_both_arguments(backend, name, x_shape, kernel_shape, strides,
                                                           padding, dilation):
    # Conv2DInputGrad(g, kernel) and Conv2DKernelGrad(x, g) checked as functions of their own:
    # their backward rules are the third derivatives of the convolution.
    geometry, out = conv_ops.output_geometry(x_shape[1:3], kernel_shape[:2], pair(strides), padding,
                                             pair(dilation), "test")
    g_shape = (x_shape[0], *out, kernel_shape[3])
    cases = [
        (lambda g, k: conv_ops.Conv2DInputGrad(geometry, x_shape).apply(g, k),
         [normal(g_shape, 5), normal(kernel_shape, 6)]),
        (lambda x, g: conv_ops.Conv2DKernelGrad(geometry, kernel_shape[:2]).apply(x, g),
         [normal(x_shape, 7), normal(g_shape, 8)]),
    ]
    for fn, inputs in cases:
        for check in (mg.gradcheck, mg.gradgradcheck):
            report = check(fn, inputs)
            assert report.passed and report.max_abs_error < 1e-6, str(report)


def test_the_layer_gradchecks_through_its_weights(backend):
    layer = Conv2D(2, (2, 3), strides=(1, 2), padding="same", activation="sigmoid", dtype="float64")
    layer.build((1, 4, 5, 2))

    def fn(x, kernel, bias):
        layer.kernel, layer.bias = kernel, bias
        return layer(x)

    inputs = [normal((1, 4, 5, 2)), normal((2, 3, 2, 2), 1), normal(2, 2)]
    for check in (mg.gradcheck, mg.gradgradcheck):
        report = check(fn, inputs, names=["x", "kernel", "bias"])
        assert report.passed and report.max_abs_error < 1e-6, str(report)


def test_no_patch_array_outlives_its_step(backend):
    x = mg.Tensor(normal((2, 6, 6, 3)), requires_grad=True)
    kernel = mg.Tensor(normal((3, 3, 3, 4), 1), requires_grad=True)
    y = conv2d(x, kernel, strides=2, padding="same")
    held = {name: type(value).__name__ for name, value in vars(y.grad_fn).items() if name != "inputs"}
    assert set(held) == {"geometry", "columns"}, held  # the im2col matrix, for this node's backward
    node = y.grad_fn
    (dx,) = mg.grad((y * y).sum(), [x], create_graph=True)
    assert node.columns is None  # handed on to dl/dkernel at its backward, not kept
    for node in (dx.grad_fn, *[t.grad_fn for t in dx.grad_fn.inputs if t.grad_fn is not None]):
        arrays = [name for name, value in vars(node).items()
                  if name != "inputs" and (mg.backend.is_array(value) or isinstance(value, mg.Tensor))]
        assert not arrays, f"{node} keeps {arrays}"
    y = conv2d(x, kernel, strides=2, padding="same")
    y.sum().backward()
    assert y.grad_fn.inputs is None and not hasattr(y.grad_fn, "columns")  # released: the engine freed it


# ---- outputs against the definition, PyTorch and Keras ------------------------------------------

@pytest.mark.parametrize("name, x_shape, kernel_shape, strides, padding, dilation", GEOMETRIES, ids=IDS)
def test_outputs_match_the_direct_loop(backend, name, x_shape, kernel_shape, strides, padding, dilation):
    x, kernel, bias = conv_inputs(x_shape, kernel_shape, seed=3)
    y = conv2d(mg.Tensor(x), mg.Tensor(kernel), mg.Tensor(bias), strides, padding, dilation_rate=dilation)
    expected = direct_conv(x, kernel, bias, pair(strides), padding, pair(dilation))
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, x_shape, kernel_shape, strides, padding, dilation", GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_outputs_and_gradients_match_pytorch(name, x_shape, kernel_shape, strides, padding, dilation,
                                             data_format):
    torch = pytest.importorskip("torch", reason="PyTorch is optional; the direct loop above always runs")
    x, kernel, bias = conv_inputs(x_shape, kernel_shape, seed=4)
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2).copy()
    (sh, sw), (dh, dw) = pair(strides), pair(dilation)
    ours = [mg.Tensor(a, requires_grad=True) for a in (x, kernel, bias)]
    y = conv2d(*ours, strides, padding, data_format, dilation)
    upstream = normal(y.shape, 9)
    (y * mg.Tensor(upstream)).sum().backward()

    theirs = [torch.tensor(a, requires_grad=True) for a in (x, kernel, bias)]
    nchw = theirs[0] if data_format == "channels_first" else theirs[0].permute(0, 3, 1, 2)
    if padding == "same":  # TensorFlow's padding, explicitly: torch's own is symmetric
        top, bottom = tf_same_padding(nchw.shape[2], kernel_shape[0], sh, dh)
        left, right = tf_same_padding(nchw.shape[3], kernel_shape[1], sw, dw)
        nchw = torch.nn.functional.pad(nchw, (left, right, top, bottom))
    out = torch.nn.functional.conv2d(nchw, theirs[1].permute(3, 2, 0, 1), theirs[2], stride=(sh, sw),
                                     dilation=(dh, dw))
    out = out if data_format == "channels_first" else out.permute(0, 2, 3, 1)
    (out * torch.tensor(upstream)).sum().backward()

    np.testing.assert_allclose(y.numpy(), out.detach().numpy(), rtol=1e-10, atol=1e-12)
    for label, mine, reference in zip(("x", "kernel", "bias"), ours, theirs):
        np.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"dl/d{label}")


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_same_padding_puts_the_odd_pixel_after_as_pytorchs_own_same_does_at_stride_1():
    torch = pytest.importorskip("torch", reason="PyTorch is optional; the direct loop above always runs")
    x, kernel, _ = conv_inputs((1, 6, 5, 2), (2, 4, 2, 3), seed=5)  # even kernels: odd totals
    y = conv2d(mg.Tensor(x), mg.Tensor(kernel), padding="same")
    expected = torch.nn.functional.conv2d(torch.tensor(x).permute(0, 3, 1, 2),
                                          torch.tensor(kernel).permute(3, 2, 0, 1), padding="same")
    np.testing.assert_allclose(y.numpy(), expected.permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-12)


def keras_pair(filters, kernel_size, data_format="channels_last", input_shape=None, **options):
    """keras.layers.Conv2D and our Conv2D (float32) with the same non-trivial kernel and bias."""
    reference = keras.layers.Conv2D(filters, kernel_size, data_format=data_format, **options)
    ours = Conv2D(filters, kernel_size, data_format=data_format, **options)
    reference.build(input_shape)
    ours.build(input_shape)
    kernel = normal(ours.kernel.shape, 11).astype(np.float32)
    reference.kernel.assign(kernel)
    ours.kernel.data[...] = mg.Tensor(kernel).data
    if ours.use_bias:
        bias = normal(ours.bias.shape, 12).astype(np.float32)
        reference.bias.assign(bias)
        ours.bias.data[...] = mg.Tensor(bias).data
    return reference, ours


KERAS_CASES = [
    pytest.param((2, 7, 7, 3), 4, 3, dict(), id="3x3-valid"),
    pytest.param((2, 7, 7, 3), 4, 3, dict(padding="same"), id="3x3-same"),
    pytest.param((2, 8, 7, 3), 4, 2, dict(padding="same"), id="2x2-same-even-kernel"),
    pytest.param((2, 8, 7, 3), 4, (2, 3), dict(padding="same", strides=2), id="2x3-same-stride-2"),
    pytest.param((2, 9, 8, 3), 2, 3, dict(strides=(2, 3)), id="3x3-valid-strides-2-3"),
    pytest.param((2, 8, 8, 2), 3, 4, dict(padding="same", strides=3), id="4x4-same-stride-3"),
    pytest.param((2, 9, 9, 2), 3, 3, dict(dilation_rate=2), id="3x3-valid-dilation-2"),
    pytest.param((2, 8, 9, 2), 3, (2, 3), dict(padding="same", dilation_rate=(2, 3)), id="2x3-same-dilation"),
    pytest.param((2, 3, 7, 6), 4, 3, dict(data_format="channels_first", padding="same", strides=2),
                 id="channels-first-same-stride-2"),
    pytest.param((2, 3, 8, 7), 4, (2, 3), dict(data_format="channels_first", dilation_rate=2),
                 id="channels-first-valid-dilation-2"),
    pytest.param((2, 6, 6, 3), 5, 3, dict(use_bias=False, activation="relu", padding="same"),
                 id="relu-no-bias"),
]


@pytest.mark.parametrize("input_shape, filters, kernel_size, options", KERAS_CASES)
def test_outputs_match_keras(backend, input_shape, filters, kernel_size, options):
    reference, ours = keras_pair(filters, kernel_size, input_shape=input_shape, **options)
    x = normal(input_shape, 13).astype(np.float32)
    expected = np.asarray(reference(x))
    y = ours(mg.Tensor(x))
    assert y.shape == expected.shape == ours.compute_output_shape(input_shape)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert ours.kernel.shape == tuple(reference.kernel.shape)


def test_the_config_round_trips_and_agrees_with_keras():
    options = dict(strides=(2, 1), padding="SAME", data_format="channels_first", dilation_rate=1,
                   activation="relu", use_bias=False, kernel_initializer="he_normal",
                   kernel_regularizer="l2", bias_constraint="non_neg")
    layer = Conv2D(6, (3, 2), dtype="float64", **options)
    config = layer.get_config()
    assert Conv2D.from_config(config).get_config() == config
    reference = keras.layers.Conv2D(6, (3, 2), **options).get_config()
    for name in ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
                 "activation", "use_bias"):
        assert config[name] == reference[name], name
    assert config["dtype"] == "float64" and config["kernel_initializer"]["class_name"] == "HeNormal"
    rebuilt = Conv2D.from_config(config)
    assert rebuilt(mg.ones((1, 2, 6, 6))).shape == (1, 6, 3, 6)


def test_the_docstring_documents_every_argument_and_its_example_runs():
    parameters = [p.name for p in inspect.signature(Conv2D.__init__).parameters.values()
                  if p.name != "self" and p.kind != p.VAR_KEYWORD] + ["dtype", "trainable"]
    docstring = inspect.getdoc(Conv2D)
    assert docstring.splitlines()[1] == "", "a one-line summary comes first"
    missing = [name for name in parameters if f"\n    {name}: " not in docstring]
    assert not missing, f"Conv2D's docstring has no Args entry for {missing}"
    for section in ("Args:", "Call arguments:", "Weights", "Example:"):
        assert section in docstring, section
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder(recurse=False).find(Conv2D, "Conv2D", globs={}):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0


# ---- misuse: a named error, and nothing changed -------------------------------------------------

@pytest.mark.parametrize("arguments, message", [
    (dict(filters=0, kernel_size=3), "filters must be a positive int, got 0"),
    (dict(filters=2, kernel_size=0), "kernel_size must be a positive int or a pair .* got 0"),
    (dict(filters=2, kernel_size=(3,)), "kernel_size must be .* got \\(3,\\)"),
    (dict(filters=2, kernel_size=3, strides=0), "strides must be a positive int .* got 0"),
    (dict(filters=2, kernel_size=3, strides=(1, -2)), "strides must be .* got \\(1, -2\\)"),
    (dict(filters=2, kernel_size=3, dilation_rate=0), "dilation_rate must be a positive int .* got 0"),
    (dict(filters=2, kernel_size=3, dilation_rate=1.5), "dilation_rate must be .* got 1.5"),
    (dict(filters=2, kernel_size=3, padding="full"), "padding must be one of 'valid', 'same', got 'full'"),
    (dict(filters=2, kernel_size=3, padding=1), "padding must be one of .* got 1"),
    (dict(filters=2, kernel_size=3, data_format="NHWC"),
     "data_format must be one of 'channels_last', 'channels_first', got 'NHWC'"),
    (dict(filters=2, kernel_size=3, activation="softmax"), "unknown activation 'softmax'"),
])
def test_bad_constructor_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=f"^Conv2D: {message}"):
        Conv2D(**arguments)


def test_a_wrong_rank_leaves_the_layer_unbuilt(backend):
    layer = Conv2D(2, 3)
    with pytest.raises(ValueError, match=r"Conv2D: expected inputs with 4 axes .* got shape \(2, 5, 5\)"):
        layer(mg.ones((2, 5, 5)))
    assert not layer.built and layer.kernel is None and list(layer.named_weights()) == []
    layer(mg.ones((1, 5, 5, 2)))  # still usable, then built for 2 channels
    with pytest.raises(ValueError, match=r"expected inputs with 4 axes .* got shape \(5, 5, 2\)"):
        layer(mg.ones((5, 5, 2)))


def test_a_kernel_larger_than_the_padded_input_leaves_the_layer_unbuilt(backend):
    layer = Conv2D(2, 3, dilation_rate=2)
    with pytest.raises(ValueError, match="kernel is larger than the input: along the height it covers 5 "
                                         "pixels .* padded 'valid', has 4"):
        layer(mg.ones((1, 4, 9, 1)))
    assert not layer.built and layer.kernel is None
    with pytest.raises(ValueError, match="along the width it covers 3 pixels .* has 2"):
        conv2d(mg.ones((1, 5, 2, 1)), mg.ones((3, 3, 1, 1)))
    assert conv2d(mg.ones((1, 5, 2, 1)), mg.ones((3, 3, 1, 1)), padding="same").shape == (1, 5, 2, 1)


def test_channels_that_differ_from_the_built_ones_leave_the_weights_untouched(backend):
    layer = Conv2D(2, 3, data_format="channels_first")
    layer(mg.ones((1, 3, 5, 5)))
    kernel, before = layer.kernel, layer.kernel.numpy()
    with pytest.raises(ValueError, match=r"built for inputs with 3 channels on axis 1 \(channels_first\), "
                                         r"but got input shape \(1, 4, 5, 5\)"):
        layer(mg.ones((1, 4, 5, 5)))
    assert layer.kernel is kernel and layer.in_channels == 3
    np.testing.assert_array_equal(layer.kernel.numpy(), before)


def test_bad_functional_arguments_are_named(backend):
    x, kernel = mg.ones((1, 5, 5, 2)), mg.ones((3, 3, 2, 4))
    with pytest.raises(ValueError, match=r"conv2d: x must have 4 axes .* got shape \(5, 5, 2\)"):
        conv2d(mg.ones((5, 5, 2)), kernel)
    with pytest.raises(ValueError, match=r"conv2d: kernel must have 4 axes .* got shape \(3, 3, 2\)"):
        conv2d(x, mg.ones((3, 3, 2)))
    with pytest.raises(ValueError, match="conv2d: x has 2 channels .* but the kernel takes 3"):
        conv2d(x, mg.ones((3, 3, 3, 4)))
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\).* got shape \(3,\)"):
        conv2d(x, kernel, mg.ones(3))
    with pytest.raises(ValueError, match="conv2d: strides must be .* got -1"):
        conv2d(x, kernel, strides=-1)
    with pytest.raises(ValueError, match="conv2d: dilation_rate must be .* got \\(0, 1\\)"):
        conv2d(x, kernel, dilation_rate=(0, 1))
    with pytest.raises(ValueError, match="conv2d: padding must be one of .* got 'causal'"):
        conv2d(x, kernel, padding="causal")
    with pytest.raises(ValueError, match="conv2d: data_format must be one of .* got 'NCHW'"):
        conv2d(x, kernel, data_format="NCHW")

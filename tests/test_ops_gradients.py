"""Every operation's backward, checked against central differences (gradcheck) and its second
derivatives through create_graph (gradgradcheck), in float64 on every element, per backend."""

import numpy as np
import pytest

import minigrad as mg
from conftest import normal

LABELS = np.array([2, 0, 3, 3])  # picked with integer-array indexing, one label repeated
KEEP = np.array([[True, False, True], [False, False, True]])  # keep_where's mask

# (id, function of the inputs, input arrays)
CASES = [
    # + - * / with broadcasting pairs, scalars on either side
    ("add (3,1)+(1,4)", lambda a, b: a + b, [normal((3, 1)), normal((1, 4), 1)]),
    ("add (5,)+(2,5)", lambda a, b: a + b, [normal(5), normal((2, 5), 1)]),
    ("add scalar tensor+(2,3)", lambda a, b: a + b, [normal(()), normal((2, 3), 1)]),
    ("add (4,1,3)+(2,1)", lambda a, b: a + b, [normal((4, 1, 3)), normal((2, 1), 1)]),
    ("add number", lambda a: 2.5 + a + 1, [normal((2, 3))]),
    ("sub (3,1)-(1,4)", lambda a, b: a - b, [normal((3, 1)), normal((1, 4), 1)]),
    ("sub (5,)-(2,5)", lambda a, b: a - b, [normal(5), normal((2, 5), 1)]),
    ("sub number both sides", lambda a: (1.5 - a) - 2, [normal((2, 3))]),
    ("mul (3,1)*(1,4)", lambda a, b: a * b, [normal((3, 1)), normal((1, 4), 1)]),
    ("mul (2,5)*(5,)", lambda a, b: a * b, [normal((2, 5)), normal(5, 1)]),
    ("mul scalar tensor*(2,3)", lambda a, b: a * b, [normal(()), normal((2, 3), 1)]),
    ("mul number both sides", lambda a: 3 * a * -0.5, [normal((2, 3))]),
    ("div (3,1)/(1,4)", lambda a, b: a / b, [normal((3, 1)), normal((1, 4), 1, away_from_zero=True)]),
    ("div (5,)/(2,5)", lambda a, b: a / b, [normal(5), normal((2, 5), 1, away_from_zero=True)]),
    ("div number both sides", lambda a: 2.0 / a / 3, [normal((2, 3), away_from_zero=True)]),
    ("neg", lambda a: -a, [normal((2, 3))]),
    ("pow 2", lambda a: a**2, [normal((2, 3))]),
    ("pow 3", lambda a: a**3, [normal((2, 3))]),
    ("pow 0.5", lambda a: a**0.5, [normal((2, 3), positive=True)]),
    ("pow -1.5", lambda a: a**-1.5, [normal((2, 3), positive=True)]),
    ("pow 0", lambda a: a**0 + a, [normal((2, 3))]),
    ("number ** tensor", lambda a: 2.0**a, [normal((2, 3))]),
    # tensor ** tensor, positive bases (the exponent's gradient x^y log x needs x > 0)
    ("pow tensor ** tensor", lambda a, b: a**b, [normal((2, 3), positive=True), normal((2, 3), 1)]),
    ("pow (3,1) ** (1,4)", lambda a, b: a**b, [normal((3, 1), positive=True), normal((1, 4), 1)]),
    ("pow (2,3) ** 0-d", lambda a, b: a**b, [normal((2, 3), positive=True), normal((), 1)]),
    ("pow (4,) ** (2,4)", lambda a, b: a**b, [normal(4, positive=True), normal((2, 4), 1)]),
    ("pow x ** x", lambda a: a**a, [normal((2, 3), positive=True)]),
    # reused nodes: a node reached along several paths gets the sum
    ("reuse a+a, b*b", lambda x: (x + x) * (x + x), [normal((3,))]),
    ("reuse x*x*x", lambda x: x * x * x, [normal((2, 2))]),
    ("reuse diamond", lambda x: (x.exp() * x) / (x * x + 1.0), [normal((2, 3))]),
    # matmul
    ("matmul 2-D", lambda a, b: a @ b, [normal((3, 4)), normal((4, 2), 1)]),
    ("matmul batched", lambda a, b: a @ b, [normal((2, 3, 4)), normal((2, 4, 5), 1)]),
    ("matmul batch broadcast", lambda a, b: a @ b, [normal((2, 3, 4)), normal((4, 5), 1)]),
    ("matmul batch broadcast both", lambda a, b: a @ b, [normal((1, 3, 4)), normal((2, 4, 2), 1)]),
    ("matmul vector-matrix", lambda a, b: a @ b, [normal(3), normal((3, 4), 1)]),
    ("matmul matrix-vector", lambda a, b: a @ b, [normal((3, 4)), normal(4, 1)]),
    ("matmul vector-vector", lambda a, b: a @ b, [normal(3), normal(3, 1)]),
    # reductions
    ("sum all", lambda a: a.sum(), [normal((2, 3, 4))]),
    ("sum axis 0", lambda a: a.sum(axis=0), [normal((2, 3, 4))]),
    ("sum axis -1 keepdims", lambda a: a.sum(axis=-1, keepdims=True), [normal((2, 3, 4))]),
    ("sum axes (0,2)", lambda a: a.sum(axis=(0, 2)), [normal((2, 3, 4))]),
    ("mean all", lambda a: a.mean(), [normal((2, 3, 4))]),
    ("mean axis 1", lambda a: a.mean(axis=1), [normal((2, 3, 4))]),
    ("mean axes (0,2) keepdims", lambda a: a.mean(axis=(0, 2), keepdims=True), [normal((2, 3, 4))]),
    ("max all", lambda a: a.max(), [normal((3, 4))]),
    ("max axis 1", lambda a: a.max(axis=1), [normal((3, 4))]),
    ("max axis 0 keepdims", lambda a: a.max(axis=0, keepdims=True), [normal((3, 4))]),
    ("max axes (0,2)", lambda a: a.max(axis=(0, 2)), [normal((2, 3, 4))]),
    ("max then square", lambda a: a.max(axis=-1) ** 2, [normal((3, 4))]),
    # elementwise
    ("exp", lambda a: a.exp(), [normal((2, 3))]),
    ("log", lambda a: a.log(), [normal((2, 3), positive=True)]),
    ("sqrt", lambda a: a.sqrt(), [normal((2, 3), positive=True)]),
    ("relu", lambda a: a.relu(), [normal((2, 3), away_from_zero=True)]),
    ("keep_where", lambda a: mg.ops.keep_where(a * a, mg.Tensor(KEEP).data), [normal((2, 3))]),
    ("keep_where broadcast", lambda a: mg.ops.keep_where(a, mg.Tensor(KEEP[:1]).data) * a, [normal((2, 3))]),
    ("abs", lambda a: abs(a) * a, [normal((2, 3), away_from_zero=True)]),
    ("sigmoid", lambda a: a.sigmoid(), [normal((2, 3)) * 3.0]),
    ("tanh", lambda a: a.tanh(), [normal((2, 3)) * 2.0]),
    ("mg.tanh of a product", lambda a, b: mg.tanh(a * b), [normal((3, 1)), normal((1, 4), 1)]),
    ("relu then square", lambda a: a.relu() ** 2, [normal((2, 3), away_from_zero=True)]),
    # shapes
    ("reshape", lambda a: a.reshape(3, -1) * a.reshape(3, 4), [normal((2, 6))]),
    ("transpose default", lambda a: a.transpose(), [normal((2, 3, 4))]),
    ("transpose axes", lambda a: a.transpose(1, 2, 0), [normal((2, 3, 4))]),
    ("T", lambda a: a.T @ a, [normal((3, 2))]),
    ("broadcast_to", lambda a: a.broadcast_to((2, 3, 4)), [normal((3, 1))]),
    # indexing
    ("index int", lambda a: a[1], [normal((3, 4))]),
    ("index negative int and slice", lambda a: a[-1, 1:3], [normal((3, 4))]),
    ("index reversed slice", lambda a: a[::-1, ::2], [normal((3, 4))]),
    ("index None and Ellipsis", lambda a: a[None, ..., 0], [normal((3, 4))]),
    ("index integer array with repeats", lambda a: a[np.array([0, 2, 0, 0])], [normal((3, 4))]),
    ("index each row's label", lambda z: z[np.arange(4), LABELS], [normal((4, 5))]),
    ("index boolean mask", lambda a: a[np.array([True, False, True])], [normal((3, 4))]),
    # a real use: softmax cross-entropy through log-sum-exp, with integer labels passed through
    (
        "softmax cross-entropy",
        lambda z, y: (
            ((z - z.max(axis=1, keepdims=True)).exp().sum(axis=1)).log()
            + z.max(axis=1) - z[np.arange(4), y]
        ).mean(),
        [normal((4, 5)), LABELS],
    ),
]


def on_backend(name, fn):
    """fn, asserting that it really computes on backend `name` (not silently on NumPy)."""

    def checked(*inputs):
        out = fn(*inputs)
        assert out.backend == name and out.dtype == np.float64
        return out

    return checked


@pytest.mark.parametrize("name, fn, inputs", CASES, ids=[c[0] for c in CASES])
def test_gradcheck(backend, name, fn, inputs):
    report = mg.gradcheck(on_backend(backend, fn), inputs)
    assert report.passed and report.max_abs_error < 1e-6, str(report)


@pytest.mark.parametrize("name, fn, inputs", CASES, ids=[c[0] for c in CASES])
def test_gradgradcheck(backend, name, fn, inputs):
    report = mg.gradgradcheck(on_backend(backend, fn), inputs)
    assert report.passed and report.max_abs_error < 1e-6, str(report)


def test_cast_sends_the_gradient_back_in_the_input_dtype(backend):
    x = mg.Tensor(np.ones(3, dtype=np.float16), requires_grad=True)
    y = x.astype(np.float32) * 2.0
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float16
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_max_sends_the_gradient_to_the_first_argmax_on_ties(backend):
    x = mg.Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])


def test_keep_where_drops_nan_and_inf_and_their_gradient(backend):
    x = mg.Tensor(np.array([1.0, np.nan, np.inf, 2.0]), requires_grad=True)
    keep = mg.Tensor(np.array([True, False, False, True])).data
    y = mg.ops.keep_where(x, keep)
    assert y.numpy().tolist() == [1.0, 0.0, 0.0, 2.0]
    (y * 3.0).sum().backward()
    assert x.grad.numpy().tolist() == [3.0, 0.0, 0.0, 3.0]


def test_relu_gradient_is_zero_at_zero(backend):
    x = mg.Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    x.relu().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])


def test_abs_gradient_is_the_sign_and_zero_at_zero(backend):
    x = mg.Tensor(np.array([-1.5, 0.0, 2.0]), requires_grad=True)
    x.abs().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [-1.0, 0.0, 1.0])


def test_sigmoid_is_stable_for_large_inputs(backend):
    x = mg.Tensor(np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0]))
    y = x.sigmoid().numpy()
    from scipy.special import expit  # an independent, overflow-safe reference

    np.testing.assert_allclose(y, expit([-1000.0, -30.0, 0.0, 30.0, 1000.0]), rtol=1e-12)
    assert np.isfinite(y).all()


def test_tanh_is_stable_for_large_inputs(backend):
    values = np.array([-1000.0, -30.0, 0.0, 0.5, 30.0, 1000.0])
    x = mg.Tensor(values, requires_grad=True)
    y = x.tanh()
    np.testing.assert_allclose(y.numpy(), np.tanh(values), rtol=1e-12)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1 - np.tanh(values) ** 2, rtol=1e-12, atol=1e-300)
    assert np.isfinite(x.grad.numpy()).all()
    assert mg.ops.tanh is mg.tanh


MATMUL_SHAPES = [
    ((3,), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((3,), (5, 3, 4)),
    ((5, 2, 3), (3,)),
    ((5, 2, 3), (5, 3, 4)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((1, 2, 3), (5, 3, 4)),
    ((2, 1, 2, 3), (5, 3, 4)),
    ((3,), (2, 1, 3, 4)),
]


@pytest.mark.parametrize("a_shape, b_shape", MATMUL_SHAPES, 
                         ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_matmul_shapes_and_values_match_numpy(backend, a_shape, b_shape):
    a, b = normal(a_shape), normal(b_shape, 1)
    out = mg.Tensor(a) @ mg.Tensor(b)
    expected = a @ b
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


def test_vector_at_vector_is_a_0d_dot_product_with_right_gradients(backend):
    a, b = normal(3), normal(3, 1)
    out = mg.Tensor(a) @ mg.Tensor(b)
    assert out.shape == () and out.item() == pytest.approx(float(a @ b))
    fn = on_backend(backend, lambda x, y: x @ y)
    assert mg.gradcheck(fn, [a, b]).passed
    assert mg.gradgradcheck(fn, [a, b]).passed
    x = mg.Tensor(a, requires_grad=True)
    (x @ mg.Tensor(b)).backward()  # a one-element result needs no grad argument
    np.testing.assert_allclose(x.grad.numpy(), b)


def test_a_gradient_has_the_dtype_of_its_tensor(backend):
    # A float32 weight used with float64 data gets a float32 gradient, as in PyTorch.
    weight = mg.Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    data = mg.Tensor(np.array([0.5, 0.25]), requires_grad=True)
    (weight * data).sum().backward()
    assert weight.grad.dtype == np.float32 and data.grad.dtype == np.float64
    np.testing.assert_array_equal(weight.grad.numpy(), [0.5, 0.25])


@pytest.mark.parametrize(
    "fn, expected",
    [
        (lambda a, b: a + b, np.add),
        (lambda a, b: a - b, np.subtract),
        (lambda a, b: a * b, np.multiply),
        (lambda a, b: a / b, np.divide),
        (lambda a, b: a @ b.T, lambda a, b: a @ b.T),
    ],
)
def test_forward_values_match_numpy(backend, fn, expected):
    a, b = normal((3, 4)), normal((3, 4), 1, away_from_zero=True)
    np.testing.assert_allclose(fn(mg.Tensor(a), mg.Tensor(b)).numpy(), expected(a, b), rtol=1e-12)

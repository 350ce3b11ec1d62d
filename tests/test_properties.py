"""Property tests: random shapes and broadcastable pairs pass gradcheck (and a sample of them
gradgradcheck) for every binary operation, reduction and shape operation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import minigrad as mg

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


def values(shape, seed, keep_off_zero=False):
    x = np.random.default_rng(seed).uniform(-2.0, 2.0, size=shape)
    if keep_off_zero:  # a divisor, or a point where relu bends: stay away from 0
        x = np.where(x >= 0, x + 0.3, x - 0.3)
    return x


BROADCASTABLE_PAIRS = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)


def operand_pair(shapes, op, seed):
    """Two operands of the drawn shapes; a divisor is kept off 0."""
    a_shape, b_shape = shapes.input_shapes
    return values(a_shape, seed), values(b_shape, seed + 1, keep_off_zero=(op == "div"))


@PROPERTY_SETTINGS
@given(shapes=BROADCASTABLE_PAIRS, op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**16))
def test_binary_operations_on_broadcastable_pairs(shapes, op, seed):
    a, b = operand_pair(shapes, op, seed)
    assert mg.gradcheck(BINARY[op], [a, b]).passed
    assert BINARY[op](mg.Tensor(a), mg.Tensor(b)).shape == shapes.result_shape


@PROPERTY_SETTINGS
@given(shapes=BROADCASTABLE_PAIRS, op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**16))
def test_second_derivatives_on_broadcastable_pairs(shapes, op, seed):
    a, b = operand_pair(shapes, op, seed)
    assert mg.gradgradcheck(lambda x, y: BINARY[op](x, y) * x, [a, b]).passed


@st.composite
def shape_and_axis(draw):
    shape = draw(array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3))
    axes = draw(st.one_of(
        st.none(),
        st.integers(-len(shape), len(shape) - 1),
        st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True).map(tuple),
    ))
    return shape, axes


@PROPERTY_SETTINGS
@given(case=shape_and_axis(), keepdims=st.booleans(), reduction=st.sampled_from(["sum", "mean", "max"]),
       seed=st.integers(0, 2**16))
def test_reductions_over_any_axes(case, keepdims, reduction, seed):
    shape, axes = case
    x = values(shape, seed)
    fn = lambda t: getattr(t, reduction)(axis=axes, keepdims=keepdims)  # noqa: E731
    assert mg.gradcheck(fn, [x]).passed
    np.testing.assert_allclose(fn(mg.Tensor(x)).numpy(), getattr(x, reduction)(axis=axes, keepdims=keepdims))


@PROPERTY_SETTINGS
@given(shape=array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3), seed=st.integers(0, 2**16),
       data=st.data())
def test_transpose_reshape_and_elementwise_chains(shape, seed, data):
    permutation = tuple(data.draw(st.permutations(range(len(shape)))))
    x = values(shape, seed, keep_off_zero=True)

    def fn(t):
        moved = t.transpose(permutation).reshape(-1)
        return (moved.relu() + 1.0).log() * (moved * 0.5).exp() + (t * t + 1.0).sqrt().sum()

    assert mg.gradcheck(fn, [x]).passed


@pytest.mark.parametrize("batch", [(), (2,), (2, 1)])
@PROPERTY_SETTINGS
@given(n=st.integers(1, 3), k=st.integers(1, 3), m=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_matmul_of_any_compatible_shapes(batch, n, k, m, seed):
    a = values(batch + (n, k), seed)
    b = values((k, m), seed + 1)
    assert mg.gradcheck(lambda x, y: x @ y, [a, b]).passed

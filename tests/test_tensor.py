"""The Tensor's contract: dtypes, backward semantics, graph freeing, grad mode, errors."""

import gc
import weakref

import numpy as np
import pytest

import minigrad as mg
from conftest import normal


# ---- construction and dtypes -----------------------------------------------------------------

def test_python_numbers_and_lists_become_float32(backend):
    assert mg.Tensor(1.0).dtype == np.float32
    assert mg.Tensor(3).dtype == np.float32
    assert mg.Tensor([[1, 2], [3, 4]]).dtype == np.float32
    assert mg.Tensor([1, 2], dtype=np.int64).dtype == np.int64
    assert mg.Tensor(2.0, dtype="float64").dtype == np.float64


def test_arrays_keep_their_dtype(backend):
    assert mg.Tensor(np.zeros(3)).dtype == np.float64
    assert mg.Tensor(np.zeros(3, dtype=np.float16)).dtype == np.float16
    assert mg.Tensor(np.arange(3)).dtype == np.arange(3).dtype
    assert mg.Tensor(np.zeros(3), dtype=np.float32).dtype == np.float32


def test_a_tensor_copies_the_array_it_is_made_from(backend):
    source = np.zeros(3, dtype=np.float32)
    t = mg.Tensor(source, requires_grad=True)
    t.data += 1.0  # what an optimizer step does
    np.testing.assert_array_equal(source, [0.0, 0.0, 0.0])


def test_numpy_scalar_exponents_keep_the_dtype(backend):
    x = mg.Tensor([1.0, 2.0])
    assert (x ** np.int64(2)).dtype == np.float32
    assert (x ** np.float64(0.5)).dtype == np.float32


def test_new_tensors_are_made_on_the_current_backend(backend):
    assert mg.Tensor([1.0]).backend == backend
    assert mg.Tensor(np.ones(2)).backend == backend
    assert mg.zeros((2, 3)).backend == backend and mg.zeros((2, 3)).shape == (2, 3)
    assert float(mg.ones(4).sum().item()) == 4.0


def test_an_integer_tensor_cannot_require_grad(backend):
    with pytest.raises(TypeError, match="only floating-point tensors can require grad.*int64"):
        mg.Tensor(np.arange(3, dtype=np.int64), requires_grad=True)


def test_non_numeric_data_is_a_clear_error():
    with pytest.raises(TypeError, match="cannot make a tensor from str"):
        mg.Tensor("abc")
    with pytest.raises(TypeError, match="from ndarray of dtype <U1; expected a number"):
        mg.Tensor(np.array(["a", "b"]))


@pytest.mark.parametrize(
    "data, named",
    [
        (None, "NoneType None"),
        ("1.5", "str '1.5'"),
        (b"7", "bytes b'7'"),
        (["1", 2], "str '1' inside the list"),
        ([[1.0, 2.0], [3.0, "4"]], "str '4' inside the list"),
        ([None, 1.0], "NoneType None inside the list"),
        ((1.0, b"2"), "bytes b'2' inside the tuple"),
    ],
)
def test_strings_none_and_bytes_are_refused_not_parsed(backend, data, named):
    with pytest.raises(TypeError) as caught:
        mg.Tensor(data)
    message = str(caught.value)
    assert named in message
    assert "expected a number, a (nested) list of numbers, or an array" in message


@pytest.mark.parametrize(
    "data, expected",
    [
        (True, 1.0),
        (3, 3.0),
        (2.5, 2.5),
        ([1, 2], [1.0, 2.0]),
        ((1, 2.5), [1.0, 2.5]),
        ([[True, 0], [2, 3.5]], [[1.0, 0.0], [2.0, 3.5]]),
        ([np.float32(1.5), np.int64(2)], [1.5, 2.0]),
        ([np.array([1, 2]), np.array([3, 4])], [[1.0, 2.0], [3.0, 4.0]]),
        (2**70, float(2**70)),
    ],
)
def test_numbers_and_lists_of_numbers_still_make_tensors(backend, data, expected):
    t = mg.Tensor(data)
    assert t.dtype == np.float32
    np.testing.assert_allclose(t.numpy(), np.asarray(expected, dtype=np.float32))


@pytest.mark.parametrize(
    "data, named",
    [
        (1j, "complex 1j"),
        (np.complex64(2), "complex64"),
        (np.array([1j, 2]), "ndarray of dtype complex128"),
        ([1.0, 2j], "complex 2j inside the list"),
    ],
)
def test_complex_data_is_refused(backend, data, named):
    with pytest.raises(TypeError, match="minigrad supports real numbers only") as caught:
        mg.Tensor(data)
    assert named in str(caught.value)


@pytest.mark.parametrize(
    "expression, named",
    [
        (lambda t: t * 1j, "complex 1j"),
        (lambda t: 1j + t, "complex 1j"),
        (lambda t: t - np.complex64(1j), "complex64 1j"),
        (lambda t: t / np.array([1j, 1.0]), "ndarray of dtype complex128"),
        (lambda t: t + [1j, 1.0], "complex 1j inside the list"),
        (lambda t: t**1j, "complex 1j"),
        (lambda t: t ** np.complex128(2), "complex128 (2+0j)"),
        (lambda t: 1j**t, "complex 1j"),
        (lambda t: t @ np.array([1j, 1.0]), "ndarray of dtype complex128"),
        (lambda t: t < 1j, "complex 1j"),
        (lambda t: (t * 1.0).backward(np.array([1j, 1.0])), "ndarray of dtype complex128"),
    ],
)
def test_complex_operands_are_refused(backend, expression, named):
    t = mg.Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="minigrad supports real numbers only") as caught:
        expression(t)
    assert named in str(caught.value)


def test_string_operands_are_refused_and_named(backend):
    t = mg.Tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="cannot combine a Tensor with str '1'"):
        t + "1"
    with pytest.raises(TypeError, match="str '1' inside the list"):
        t * ["1", 2]


def test_a_list_operand_of_an_integer_tensor_keeps_its_fractions(backend):
    i = mg.Tensor(np.array([1, 2]))
    np.testing.assert_array_equal((i + [0.5, 0.25]).numpy(), [1.5, 2.25])
    assert (i + [1, 2]).dtype == i.dtype


def test_properties_and_conversions(backend):
    t = mg.Tensor(np.arange(6.0).reshape(2, 3))
    assert (t.shape, t.ndim, t.size, len(t)) == ((2, 3), 2, 6, 2)
    copy = t.numpy()
    assert isinstance(copy, np.ndarray)
    copy[0, 0] = 100.0
    assert t.numpy()[0, 0] == 0.0, "numpy() must return a copy"
    assert mg.Tensor([[2.5]]).item() == 2.5
    np.testing.assert_array_equal(np.asarray(t), np.arange(6.0).reshape(2, 3))
    assert "requires_grad=True" in repr(mg.Tensor([1.0], requires_grad=True))


def test_item_needs_one_element(backend):
    with pytest.raises(ValueError, match=r"one element, got shape \(2,\)"):
        mg.Tensor([1.0, 2.0]).item()


def test_detach_shares_data_and_leaves_the_graph(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).detach()
    assert not y.requires_grad and y.is_leaf
    z = x.detach()
    assert z.data is x.data


# ---- scalars are weak: they take the tensor's dtype ------------------------------------------

def test_python_and_numpy_scalars_keep_the_tensor_dtype(backend):
    x = mg.Tensor([1.0, 2.0])  # float32
    assert (x * 2.0).dtype == np.float32
    assert (2 + x).dtype == np.float32
    assert (np.float64(2.0) * x).dtype == np.float32
    assert (x / np.float64(3.0)).dtype == np.float32


def test_a_float_scalar_with_an_integer_tensor_makes_floats(backend):
    i = mg.Tensor(np.array([1, 2]))
    assert (i + 1).dtype == i.dtype
    assert (i + 0.5).dtype.kind == "f"


# ---- backward ----------------------------------------------------------------------------------

def test_a_node_reached_along_several_paths_gets_the_sum(backend):
    x = mg.Tensor(3.0, requires_grad=True)
    a = x
    b = a + a
    c = b + b
    c.backward()
    assert x.grad.item() == 4.0


def test_gradient_values_of_a_small_expression(backend):
    x = mg.Tensor([1.0, -2.0, 3.0], requires_grad=True)
    ((x * x).sum() + x.exp().sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.0, -2, 3]) + np.exp([1.0, -2, 3]), rtol=1e-6)


def test_grad_may_be_left_out_only_for_one_element(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"one-element tensor.*shape \(2,\)"):
        (x * 2).backward()
    (x * 2).backward(np.array([1.0, 10.0], dtype=np.float32))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 20.0])


def test_grad_of_the_wrong_shape_names_both_shapes(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(ValueError, match=r"grad has shape \(3,\) but the tensor has shape \(2,\)"):
        y.backward(np.ones(3, dtype=np.float32))
    assert x.grad is None, "a refused backward must leave the gradients untouched"


def test_backward_on_a_constant_is_an_error(backend):
    with pytest.raises(RuntimeError, match="does not require grad"):
        (mg.Tensor([1.0]) * 2).sum().backward()


def test_gradients_accumulate_until_reset(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_the_graph_is_freed_after_backward(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already been freed.*retain_graph=True"):
        y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])  # untouched by the refused call


def test_retain_graph_allows_a_second_backward(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 8.0])


def test_leaves_never_share_a_gradient_array(backend):
    a = mg.Tensor([1.0], requires_grad=True)
    b = mg.Tensor([2.0], requires_grad=True)
    (a + b).sum().backward()
    assert a.grad is not b.grad and a.grad.data is not b.grad.data


def _shares_memory(a, b):
    return bool(mg.backend.get_array_module(a.data).shares_memory(a.data, b.data))


def test_a_leaf_gradient_never_aliases_the_callers_gradient_or_another_leaf(backend):
    a = mg.Tensor([1.0, 2.0], requires_grad=True)
    b = mg.Tensor([3.0, 4.0], requires_grad=True)
    c = mg.Tensor([[5.0, 6.0]], requires_grad=True)
    upstream = mg.Tensor([1.0, 1.0])
    (a + b + c.reshape(2)).backward(upstream)
    pairs = [(a.grad, b.grad), (a.grad, c.grad), (b.grad, c.grad),
             (a.grad, upstream), (b.grad, upstream), (c.grad, upstream)]
    assert not any(_shares_memory(x, y) for x, y in pairs)
    a.grad.data *= 10  # an in-place edit of one gradient (clipping, say) reaches no other
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(c.grad.numpy(), [[1.0, 1.0]])
    np.testing.assert_array_equal(upstream.numpy(), [1.0, 1.0])


def test_a_leaf_keeps_a_fresh_gradient_array_without_copying_it(backend):
    returned = []

    class Twice(mg.autograd.Function):
        def forward(self, x):
            return x * 2

        def backward(self, grad):
            returned.append(grad.data * 2)  # a fresh array, seen by no one else
            return (mg.Tensor._make(returned[-1]),)

    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    Twice().apply(x).backward(mg.Tensor([1.0, 1.0]))
    assert x.grad.data is returned[0]


def test_backward_without_create_graph_records_nothing(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    (x.exp() * x).sum().backward()
    assert x.grad._ctx is None and not x.grad.requires_grad


def test_create_graph_gives_differentiable_gradients(backend):
    x = mg.Tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    (x**3).sum().backward(create_graph=True)
    first = x.grad
    assert first.requires_grad
    np.testing.assert_allclose(first.numpy(), [3.0, 12.0])
    x.grad = None
    first.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 12.0])  # d2/dx2 x^3 = 6x


def test_grad_returns_gradients_without_touching_dot_grad(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    w = mg.Tensor([5.0, 5.0], requires_grad=True)
    (gx,) = mg.grad((x * w).sum(), [x])
    np.testing.assert_array_equal(gx.numpy(), [5.0, 5.0])
    assert x.grad is None and w.grad is None


def test_grad_names_an_unused_input(backend):
    x = mg.Tensor([1.0], requires_grad=True)
    unused = mg.Tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="input 1.*not used.*allow_unused=True"):
        mg.grad((x * 2).sum(), [x, unused])
    assert mg.grad((x * 2).sum(), [x, unused], allow_unused=True)[1] is None


# ---- the graph, as a learner inspects it and extends it ---------------------------------------

class Square(mg.Function):
    """The kind of operation a lesson has a learner write: forward on arrays, backward beside it."""

    def forward(self, x):
        return x * x

    def backward(self, grad):
        (x,) = self.inputs
        return (grad * 2.0 * x,)


def test_a_function_written_outside_minigrad_is_differentiated_like_its_own(backend):
    x = mg.Tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = Square().apply(x)
    np.testing.assert_array_equal(y.numpy(), [1.0, 4.0, 9.0])
    assert isinstance(y.grad_fn, Square) and y.grad_fn.inputs[0] is x
    (y.sum() * 1.0).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, -4.0, 6.0])
    gradients = mg.grad(Square().apply(x).sum(), [x], create_graph=True)
    (second,) = mg.grad(gradients[0].sum(), [x])  # backward in Tensor operations: d2/dx2 = 2
    np.testing.assert_array_equal(second.numpy(), [2.0, 2.0, 2.0])


def test_grad_fn_names_the_operation_and_is_none_for_a_leaf(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    y = (x * 3).sum()
    assert x.grad_fn is None and x.is_leaf
    assert y.grad_fn.name == "Sum" and y.grad_fn.inputs[0].grad_fn.name == "Mul"
    assert repr(y.grad_fn) == "<Sum: input shapes (2,)>"
    assert "grad_fn=Sum" in repr(y)
    with pytest.raises(AttributeError):
        y.grad_fn = None  # read-only: the graph is made by operations, not assigned
    with mg.no_grad():
        assert (x * 3).grad_fn is None


def test_an_operation_on_a_parameter_makes_a_plain_tensor(backend):
    weight = mg.nn.Parameter(np.ones(2, np.float32))
    assert type(weight * 2) is mg.Tensor and type(weight.T) is mg.Tensor


def test_topological_order_lists_inputs_first_and_the_root_last(backend):
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    w = mg.Tensor([3.0, 4.0], requires_grad=True)
    product = x * w
    loss = (product + x).sum()
    order = mg.topological_order(loss)
    assert order[-1] is loss
    position = {id(t): i for i, t in enumerate(order)}
    assert len(position) == len(order) == 5  # x, w, product, product + x, loss: each once
    for tensor in order:
        for parent in tensor.grad_fn.inputs if tensor.grad_fn else ():
            assert position[id(parent)] < position[id(tensor)]
    constant = mg.Tensor([1.0, 1.0])
    assert all(t is not constant for t in mg.topological_order([(x * constant).sum(), loss]))
    assert mg.topological_order(x) == [x]


def test_the_graph_has_no_reference_cycles(backend):
    gc.disable()
    try:
        x = mg.Tensor(normal((4, 3)), requires_grad=True)
        hidden = (x * 2).exp()
        probe = weakref.ref(hidden)
        loss = (hidden * x).sum()
        del hidden
        assert probe() is not None, "the graph keeps its intermediate tensors while it is alive"
        loss.backward()
        del loss
        assert probe() is None, "reference counting alone must free the graph"
    finally:
        gc.enable()


# ---- grad mode ---------------------------------------------------------------------------------

def test_no_grad_records_no_graph(backend):
    x = mg.Tensor([1.0], requires_grad=True)
    with mg.no_grad():
        y = x * 2
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf


def test_no_grad_works_as_a_decorator(backend):
    @mg.no_grad()
    def double(t):
        return t * 2

    assert not double(mg.Tensor([1.0], requires_grad=True)).requires_grad


# ---- errors that name the shapes --------------------------------------------------------------

@pytest.mark.parametrize(
    "expression, message",
    [
        (lambda a, b: a + b, r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"),
        (lambda a, b: a * b, r"mul: shapes \(2, 3\) and \(4,\) cannot be broadcast"),
        (lambda a, b: a - b, r"sub: shapes \(2, 3\) and \(4,\)"),
        (lambda a, b: a / b, r"div: shapes \(2, 3\) and \(4,\)"),
        (lambda a, b: a @ b, r"matmul: shapes \(2, 3\) and \(4,\) do not match"),
        (lambda a, b: a < b, r"lt: shapes \(2, 3\) and \(4,\)"),
    ],
)
def test_shape_mismatches_name_both_shapes(backend, expression, message):
    with pytest.raises(ValueError, match=message):
        expression(mg.Tensor(np.ones((2, 3))), mg.Tensor(np.ones(4)))


def test_shape_operation_errors_name_the_shapes(backend):
    x = mg.Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"reshape: cannot reshape shape \(2, 3\) \(6 elements\) into \(4,\)"):
        x.reshape(4)
    with pytest.raises(ValueError, match=r"broadcast_to: shape \(2, 3\) cannot be broadcast to \(3, 3\)"):
        x.broadcast_to((3, 3))
    with pytest.raises(ValueError, match=r"sum: axis 2 is out of range for a tensor of shape \(2, 3\)"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match=r"matmul: the batch axes of shapes \(2, 3, 4\) and \(5, 4, 2\)"):
        mg.Tensor(np.ones((2, 3, 4))) @ mg.Tensor(np.ones((5, 4, 2)))


def test_tensor_to_a_tensor_power_broadcasts_like_numpy(backend):
    base = np.array([[0.5], [2.0], [3.0]])
    exponent = np.array([-1.0, 0.0, 1.5, 2.0])
    x = mg.Tensor(base, requires_grad=True)
    y = mg.Tensor(exponent, requires_grad=True)
    out = x**y
    np.testing.assert_allclose(out.numpy(), base**exponent, rtol=1e-12)
    out.sum().backward()
    # d/dx x^y = y x^(y-1); d/dy x^y = x^y log x, each summed over the broadcast axis
    expected_x_grad = (exponent * base ** (exponent - 1)).sum(axis=1, keepdims=True)
    expected_y_grad = (base**exponent * np.log(base)).sum(axis=0)
    np.testing.assert_allclose(x.grad.numpy(), expected_x_grad, rtol=1e-12)
    np.testing.assert_allclose(y.grad.numpy(), expected_y_grad, rtol=1e-12)


def test_a_negative_base_follows_numpy_and_only_the_exponent_gradient_is_nan(backend):
    x = mg.Tensor(np.array([-2.0, 3.0]), requires_grad=True)
    y = mg.Tensor(np.array([2.0, 2.0]), requires_grad=True)
    out = x**y
    np.testing.assert_array_equal(out.numpy(), [4.0, 9.0])
    with np.errstate(invalid="ignore"):  # log(-2) is nan: the documented x > 0 condition
        out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-4.0, 6.0])
    exponent_grad = y.grad.numpy()
    assert np.isnan(exponent_grad[0]) and exponent_grad[1] == pytest.approx(9 * np.log(3.0))


def test_an_array_base_and_a_tensor_exponent(backend):
    xp = mg.backend.module(backend)
    y = mg.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    out = xp.asarray([2.0, 3.0]) ** y
    np.testing.assert_allclose(out.numpy(), [2.0, 9.0])
    out.sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [2.0 * np.log(2.0), 9.0 * np.log(3.0)])


def test_pow_refuses_what_is_not_a_real_number(backend):
    x = mg.Tensor([1.0])
    with pytest.raises(TypeError, match="cannot combine a Tensor with str '2'"):
        x ** "2"
    with pytest.raises(ValueError, match=r"pow: shapes \(2,\) and \(3,\) cannot be broadcast"):
        mg.Tensor([1.0, 2.0]) ** mg.Tensor([1.0, 2.0, 3.0])


# ---- comparisons -------------------------------------------------------------------------------

def test_comparisons_return_non_differentiable_boolean_tensors(backend):
    x = mg.Tensor([-1.0, 0.0, 2.0], requires_grad=True)
    for result, expected in [
        (x > 0, [False, False, True]),
        (x >= 0, [False, True, True]),
        (x < 0, [True, False, False]),
        (x <= 0, [True, True, False]),
        (x == 0, [False, True, False]),
        (x != 0, [True, False, True]),
        (0 < x, [False, False, True]),
    ]:
        assert result.dtype == np.bool_ and not result.requires_grad
        np.testing.assert_array_equal(result.numpy(), expected)


def test_argmax_picks_each_rows_maximum(backend):
    z = mg.Tensor([[0.1, 0.7, 0.2], [0.9, 0.0, 0.1]])
    np.testing.assert_array_equal(z.argmax(axis=1).numpy(), [1, 0])


# ---- randomness --------------------------------------------------------------------------------

def test_manual_seed_reproduces_bit_for_bit(backend):
    mg.manual_seed(123)
    first = (mg.randn(3, 4).numpy(), mg.rand(5).numpy())
    mg.manual_seed(123)
    second = (mg.randn(3, 4).numpy(), mg.rand(5).numpy())
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    mg.manual_seed(124)
    assert not np.array_equal(mg.randn(3, 4).numpy(), first[0])
    assert first[0].dtype == np.float32 and mg.randn((2, 2), dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True])
def test_manual_seed_rejects_what_is_not_a_non_negative_int(seed):
    with pytest.raises(ValueError, match=f"non-negative integer, got {seed!r}"):
        mg.manual_seed(seed)

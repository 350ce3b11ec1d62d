"""gradcheck itself: it must catch wrong derivatives, say where, and read well."""

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import Function
from minigrad.tensor import Tensor
from conftest import normal


class SquareMissingTheTwo(Function):
    """x**2 with a wrong backward: x instead of 2x."""

    def forward(self, x):
        return x * x

    def backward(self, grad):
        return (grad * self.inputs[0],)


class ExpWithConstantDerivative(Function):
    """exp(x) whose backward treats exp(x) as a constant: right first derivatives, wrong second
    ones (the same mistake as a BatchNorm that caches 1/sqrt(var + eps))."""

    def forward(self, x):
        return np.exp(x)

    def backward(self, grad):
        return (grad * Tensor._make(np.exp(self.inputs[0].data)),)


class SquareWithOneNaNGradient(Function):
    """x**2 whose backward is right everywhere but one element, where it gives NaN."""

    def forward(self, x):
        return x * x

    def backward(self, grad):
        poisoned = np.ones(self.inputs[0].shape)
        poisoned[1, 2] = np.nan
        return (grad * self.inputs[0] * 2.0 * Tensor._make(poisoned),)


class SquareWithNaNSecondDerivative(Function):
    """x**2 whose backward adds sqrt(0 * x): zero, so the first derivative is right, but the
    derivative of sqrt at 0 is inf, and inf * 0 makes the second derivative NaN."""

    def forward(self, x):
        return x * x

    def backward(self, grad):
        x = self.inputs[0]
        return (grad * x * 2.0 + (x * 0.0).sqrt(),)


def test_a_nan_in_the_analytic_jacobian_fails_and_is_located():
    report = mg.gradcheck(lambda x: SquareWithOneNaNGradient().apply(x), [normal((2, 3))],
                          names=["x"], raise_on_failure=False)
    assert not report.passed
    # 0 * NaN is NaN: the poisoned element spoils its column of every output row
    assert "input 'x'" in report.failure and "at element (1, 2), output element" in report.failure
    assert "analytic nan" in report.failure
    assert "the analytic derivative is non-finite" in report.failure
    assert report.inputs[0].max_abs_error == np.inf and report.inputs[0].abs_error_at == (1, 2)
    with pytest.raises(mg.GradcheckError, match="non-finite"):
        mg.gradcheck(lambda x: SquareWithOneNaNGradient().apply(x), [normal((2, 3))])


def test_a_nan_in_the_numeric_jacobian_fails():
    x = np.array([1.0, -1.0, 2.0])  # log(-1) is nan: fn is not defined there
    with np.errstate(invalid="ignore"):
        report = mg.gradcheck(lambda t: t.log(), [x], raise_on_failure=False)
    assert not report.passed
    assert "output element (1,)" in report.failure
    assert "the numeric derivative is non-finite" in report.failure
    assert "fn's output element (1,) is itself nan at these inputs" in report.failure


def test_an_overflowing_function_fails():
    x = np.array([0.5, 1.0])  # exp(1000) overflows to inf in float64
    with np.errstate(over="ignore", invalid="ignore"):
        report = mg.gradcheck(lambda t: (t * 1000.0).exp(), [x], raise_on_failure=False)
        with pytest.raises(mg.GradcheckError, match="gradgradcheck failed.*non-finite"):
            mg.gradgradcheck(lambda t: (t * 1000.0).exp(), [x])
    assert not report.passed
    assert "at element (1,)" in report.failure and "derivative is non-finite" in report.failure
    assert "fn's output element (1,) is itself inf at these inputs - it overflows" in report.failure
    assert report.inputs[0].passed is False


def test_gradgradcheck_catches_a_nan_second_derivative():
    fn = lambda x: SquareWithNaNSecondDerivative().apply(x)  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        assert mg.gradcheck(fn, [normal(3)]).passed
        report = mg.gradgradcheck(fn, [normal(3)], raise_on_failure=False)
    assert not report.passed
    assert report.failure.startswith("gradgradcheck failed for input 'input 0'")
    assert "the analytic derivative is non-finite" in report.failure


def test_a_wrong_backward_is_caught_and_located():
    with pytest.raises(mg.GradcheckError) as caught:
        mg.gradcheck(lambda x: SquareMissingTheTwo().apply(x), [normal((2, 3))], names=["x"])
    message = str(caught.value)
    assert "input 'x'" in message and "at element (" in message
    assert "numeric" in message and "analytic" in message
    assert not caught.value.report.passed


def test_the_reported_values_are_the_real_numeric_and_analytic_ones():
    x = np.array([[3.0]])
    report = mg.gradcheck(lambda t: SquareMissingTheTwo().apply(t), [x], raise_on_failure=False)
    assert not report.passed
    assert "numeric 6" in report.failure and "analytic 3" in report.failure
    assert report.inputs[0].max_abs_error == pytest.approx(3.0, rel=1e-6)


def test_gradgradcheck_catches_a_derivative_held_constant():
    fn = lambda x: ExpWithConstantDerivative().apply(x)  # noqa: E731
    assert mg.gradcheck(fn, [normal(4)]).passed
    with pytest.raises(mg.GradcheckError, match="gradgradcheck failed"):
        mg.gradgradcheck(fn, [normal(4)])


def test_the_report_prints_as_a_table():
    report = mg.gradcheck(lambda a, b: a * b, [normal((2, 3)), normal(3, 1)], names=["a", "b"])
    text = str(report)
    lines = text.splitlines()
    assert "PASS" in lines[0]
    assert lines[1].split() == ["input", "shape", "max", "abs", "error", "at", "max", "rel", "error", "at", "result"]
    assert lines[2].startswith("a ") and lines[2].endswith("pass")
    assert lines[3].startswith("b ") and "(3,)" in lines[3]
    assert report.max_abs_error < 1e-8


def test_integer_inputs_are_passed_through_unchecked():
    report = mg.gradcheck(lambda z, i: z[np.arange(2), i], [normal((2, 3)), np.array([2, 0])])
    assert [row.name for row in report.inputs] == ["input 0"]


def test_an_empty_input_has_nothing_to_check_and_passes():
    report = mg.gradcheck(lambda x, e: x * 2 + e.sum(), [normal(3), np.zeros((0, 2))])
    assert report.passed and report.inputs[1].shape == (0, 2)


def test_float32_inputs_are_checked_in_float64():
    report = mg.gradcheck(lambda x: x.exp(), [mg.Tensor([0.5, 1.0])])
    assert report.passed and report.max_abs_error < 1e-8


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: mg.gradcheck(lambda x: x.astype(np.float32), [normal(3)]), TypeError, "output 0 is float32"),
        (lambda: mg.gradcheck(lambda x: x.numpy(), [normal(3)]), TypeError, "output 0 is ndarray"),
        (lambda: mg.gradcheck(lambda x: x, [normal(3)], eps=0), ValueError, "eps must be positive, got 0"),
        (lambda: mg.gradcheck(lambda i: i, [np.arange(3)]), ValueError, "no floating-point input"),
        (lambda: mg.gradcheck(lambda x: x, [normal(3)], names=["a", "b"]), ValueError, "2 names for 1 inputs"),
    ],
)
def test_bad_arguments_are_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_gradcheck_leaves_the_callers_inputs_alone():
    x = mg.Tensor(normal(3), requires_grad=True)
    before = x.numpy()
    mg.gradcheck(lambda t: t * t, [x])
    np.testing.assert_array_equal(x.numpy(), before)
    assert x.grad is None


def test_gradgradcheck_reports_under_the_title_it_is_given():
    report = mg.gradgradcheck(lambda a: (a * a * a).sum(), [np.array([1.0, 2.0])], title="cube, twice")
    assert str(report).startswith("cube, twice:")
    with pytest.raises(mg.GradcheckError, match="^cube, twice failed"):
        mg.gradgradcheck(lambda a: BrokenSquare().apply(a), [np.array([1.0, 2.0])], title="cube, twice")


class BrokenSquare(mg.Function):
    """x^2 whose backward is right at first order but constant in x (so d2/dx2 is wrong)."""

    def forward(self, x):
        return x * x

    def backward(self, grad):
        (x,) = self.inputs
        return (grad * mg.Tensor(2.0 * x.data),)  # 2x taken as a constant: no second derivative

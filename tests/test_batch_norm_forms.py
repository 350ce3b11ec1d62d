"""The three BatchNorm implementations ("fast", "closed_form", "composite") give the same
values, moving statistics and gradients, and mg.nn.batch_norm_form switches between them."""

import numpy as np
import pytest

import minigrad as mg
from conftest import normal
from minigrad.nn import functional as F
from minigrad.ops import batch_norm as reference, batch_norm_fast as fast

CASES = [((8, 3), -1), ((3, 4, 2, 3), 1)]


@pytest.fixture(autouse=True)
def _restore_the_form():
    """A test that sets the form without `with`, or fails inside one, leaks nothing."""
    previous = mg.nn.get_batch_norm_form()
    yield
    mg.nn.batch_norm_form(previous)


def run(form, shape, axis, center, scale):
    """y, the moving statistics after one update, and dl/dx, dl/dgamma, dl/dbeta, by `form`."""
    features = shape[axis]
    x = mg.Tensor(normal(shape, 1) * 3.0 + 2.0, requires_grad=True)
    gamma = mg.Tensor(1.0 + 0.3 * normal(features, 2), requires_grad=True) if scale else None
    beta = mg.Tensor(normal(features, 3), requires_grad=True) if center else None
    moving_mean = mg.Tensor(normal(features, 4))
    moving_variance = mg.Tensor(1.0 + normal(features, 5) ** 2)
    y = F.batch_norm(x, gamma, beta, moving_mean, moving_variance, axis=axis, momentum=0.7,
                     unbiased=True, form=form)
    weights = {name: w for name, w in (("x", x), ("gamma", gamma), ("beta", beta)) if w is not None}
    grads = mg.grad(y, list(weights.values()), mg.Tensor(normal(shape, 6)))
    results = {"y": y.numpy(), "moving_mean": moving_mean.numpy(), "moving_variance": moving_variance.numpy()}
    return results | {f"dl/d{name}": g.numpy() for name, g in zip(weights, grads)}


@pytest.mark.parametrize("shape, axis", CASES)
@pytest.mark.parametrize("center, scale", [(True, True), (False, False), (True, False), (False, True)])
def test_every_form_gives_the_same_values_statistics_and_gradients(backend, shape, axis, center, scale):
    expected = run("closed_form", shape, axis, center, scale)
    for form in ("fast", "composite"):
        results = run(form, shape, axis, center, scale)
        assert results.keys() == expected.keys()
        for name in expected:
            np.testing.assert_allclose(results[name], expected[name], rtol=1e-12, atol=1e-12,
                                       err_msg=f"{form}: {name}")


def training_functions(y):
    """The names of the BatchNorm Functions in y's graph."""
    return {type(t.grad_fn).__name__ for t in mg.topological_order(y) if t.grad_fn is not None} & {
        "BatchNormFast", "BatchNormClosedForm"}


def test_the_switch_picks_the_function_every_layer_runs(backend):
    layer = mg.nn.BatchNorm(dtype="float64")
    x = mg.Tensor(normal((6, 3)), requires_grad=True)
    assert mg.nn.get_batch_norm_form() == "fast"
    assert training_functions(layer(x)) == {"BatchNormFast"}
    with mg.nn.batch_norm_form("closed_form") as form:
        assert form == mg.nn.get_batch_norm_form() == "closed_form"
        assert training_functions(layer(x)) == {"BatchNormClosedForm"}
        with mg.nn.batch_norm_form("composite"):
            assert training_functions(layer(x)) == set()  # Tensor operations only
        assert mg.nn.get_batch_norm_form() == "closed_form"
    assert training_functions(layer(x)) == {"BatchNormFast"}
    # An explicit form= beats the switch.
    with mg.nn.batch_norm_form("composite"):
        assert training_functions(F.batch_norm(x, form="fast")) == {"BatchNormFast"}


def test_the_switch_runs_the_reference_equations(monkeypatch):
    calls = []
    original = reference.closed_form_backward
    monkeypatch.setattr(reference, "closed_form_backward", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(fast, "fast_forward", lambda *a: pytest.fail("the fast kernels ran"))
    layer = mg.nn.BatchNorm(dtype="float64")
    with mg.nn.batch_norm_form("closed_form"):
        layer(mg.Tensor(normal((6, 3)), requires_grad=True)).sum().backward()
    assert calls == [1]


def test_the_previous_form_comes_back_after_an_error():
    with pytest.raises(RuntimeError, match="inside"):
        with mg.nn.batch_norm_form("composite"):
            raise RuntimeError("inside")
    assert mg.nn.get_batch_norm_form() == "fast"


def test_called_without_with_the_setting_stays():
    mg.nn.batch_norm_form("closed_form")
    assert mg.nn.get_batch_norm_form() == "closed_form"
    assert F.get_batch_norm_form() == "closed_form"


@pytest.mark.parametrize("bad", ["Fast", "closed-form", "", None, 1])
def test_a_bad_name_is_refused_and_changes_nothing(bad):
    with mg.nn.batch_norm_form("composite"):
        with pytest.raises(ValueError) as error:
            mg.nn.batch_norm_form(bad)
        assert f"form {bad!r} is not one of ('fast', 'closed_form', 'composite')" in str(error.value)
        assert mg.nn.get_batch_norm_form() == "composite"
    assert mg.nn.get_batch_norm_form() == "fast"


def sgd_step(form):
    """One SGD step of a small Dense-BatchNorm-ReLU-Dense model under `form`: its state after."""
    mg.manual_seed(0)
    model = mg.nn.Sequential(mg.nn.Dense(4, use_bias=False, dtype="float64"), mg.nn.BatchNorm(dtype="float64"),
                             mg.nn.ReLU(), mg.nn.Dense(3, dtype="float64"))
    with mg.nn.batch_norm_form(form):
        loss = F.softmax_cross_entropy(model(mg.Tensor(normal((10, 5)))), np.arange(10) % 3)
        loss.backward()
    mg.optim.SGD(model.parameters(), learning_rate=0.5).step()
    return model.state_dict()


@pytest.mark.parametrize("form", ["closed_form", "composite"])
def test_one_sgd_step_is_the_same_under_every_form(form):
    expected, got = sgd_step("fast"), sgd_step(form)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_the_running_form_equals_population_statistics():
    # Eq. 3b and 4 kept batch by batch (momentum=None) give what Eq. 3b and 4 give at once.
    batches = [normal((5, 3), seed) * (seed + 1) + seed for seed in range(6)]
    layer = mg.nn.BatchNorm(momentum=None, unbiased=True, dtype="float64")
    for x in batches:
        layer(mg.Tensor(x))
    mean, variance = reference.population_statistics(
        np.stack([x.mean(0) for x in batches]), np.stack([x.var(0) for x in batches]), 5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=1e-12)

"""SGD: the update formulas of its docstring, exactly; what it touches and what it leaves alone."""

import numpy as np
import pytest

import minigrad as mg
from conftest import normal


def parameter(values):
    return mg.Tensor(np.asarray(values, dtype=np.float32), requires_grad=True)


def test_one_plain_step_is_theta_minus_lr_times_g_exactly(backend):
    theta, g = normal((3, 4)).astype(np.float32), normal((3, 4), 1).astype(np.float32)
    param = parameter(theta)
    param.grad = mg.Tensor(g)
    mg.optim.SGD([param], lr=0.1).step()
    np.testing.assert_array_equal(param.numpy(), theta - np.float32(0.1) * g)


def reference_steps(theta, grads, lr, momentum, nesterov, weight_decay):
    """The docstring's formulas in float64, written out independently."""
    buffer = None
    for g in grads:
        g = g + weight_decay * theta
        if momentum:
            buffer = g if buffer is None else momentum * buffer + g
            g = g + momentum * buffer if nesterov else buffer
        theta = theta - lr * g
    return theta


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [
    (0.9, False, 0.0), (0.9, True, 0.0), (0.0, False, 0.1), (0.5, True, 0.01), (0.99, False, 0.05),
])
def test_momentum_nesterov_and_weight_decay_follow_the_stated_formulas(backend, momentum, nesterov, weight_decay):
    theta = normal(5)
    grads = [normal(5, seed) for seed in range(1, 5)]
    param = mg.Tensor(theta, requires_grad=True)
    optimizer = mg.optim.SGD([param], lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for g in grads:
        param.grad = mg.Tensor(g)
        optimizer.step()
    np.testing.assert_allclose(param.numpy(), reference_steps(theta, grads, 0.05, momentum, nesterov, weight_decay),
                               rtol=1e-13)


def test_matches_pytorch_where_it_is_installed():
    torch = pytest.importorskip("torch", reason="PyTorch is optional; the formula test above always runs")
    theta, grads = normal(4), [normal(4, seed) for seed in range(1, 4)]
    ours = mg.Tensor(theta, requires_grad=True)
    theirs = torch.tensor(theta, requires_grad=True)
    optimizer = mg.optim.SGD([ours], lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.01)
    reference = torch.optim.SGD([theirs], lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.01)
    for g in grads:
        ours.grad, theirs.grad = mg.Tensor(g), torch.tensor(g)
        optimizer.step()
        reference.step()
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-13)


def test_sgd_trains_gamma_and_beta_but_never_the_moving_statistics(backend):
    mg.manual_seed(0)
    model = mg.nn.Sequential(mg.nn.Dense(3, use_bias=False), mg.nn.BatchNorm())
    x = mg.Tensor(normal((6, 2)).astype(np.float32))
    model.build(x.shape)
    optimizer = mg.optim.SGD(model.parameters(), lr=0.5)
    loss = (model(x) * mg.Tensor(normal((6, 3), 1).astype(np.float32))).sum()
    after_forward = model.state_dict()
    optimizer.zero_grad()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
    optimizer.step()
    for name in ("0.kernel", "1.gamma", "1.beta"):
        np.testing.assert_array_equal(model.state_dict()[name], after_forward[name] - np.float32(0.5) * grads[name])
    for name in ("1.moving_mean", "1.moving_variance", "1.num_batches_tracked"):
        np.testing.assert_array_equal(model.state_dict()[name], after_forward[name])


def test_parameters_without_a_gradient_are_left_alone():
    used, unused = parameter([1.0, 2.0]), parameter([3.0])
    used.grad = mg.Tensor([1.0, 1.0])
    mg.optim.SGD([used, unused], lr=1.0, momentum=0.9).step()
    np.testing.assert_array_equal(unused.numpy(), [3.0])
    np.testing.assert_array_equal(used.numpy(), [0.0, 1.0])


def test_zero_grad_clears_the_gradients():
    param = parameter([1.0])
    param.grad = mg.Tensor([2.0])
    mg.optim.SGD([param]).zero_grad()
    assert param.grad is None


def test_an_unbuilt_models_empty_parameter_list_is_a_clear_error():
    model = mg.nn.Sequential(mg.nn.Dense(3), mg.nn.BatchNorm())
    with pytest.raises(ValueError, match="empty parameter list.*model.build\\(input_shape\\)"):
        mg.optim.SGD(model.parameters())


@pytest.mark.parametrize("make, error, message", [
    (lambda p: mg.optim.SGD(p, lr=-0.1), ValueError, "lr must be a number in \\[0, inf\\], got -0.1"),
    (lambda p: mg.optim.SGD(p, momentum=1.5), ValueError, "momentum must be a number in \\[0, 1\\], got 1.5"),
    (lambda p: mg.optim.SGD(p, weight_decay=-1), ValueError, "weight_decay must be a number in \\[0, inf\\], got -1"),
    (lambda p: mg.optim.SGD(p, nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
    (lambda p: mg.optim.SGD(p + p), ValueError, "appears more than once"),
    (lambda p: mg.optim.SGD(p[0]), TypeError, "iterable of tensors such as model.parameters\\(\\), got Tensor"),
    (lambda p: mg.optim.SGD([p[0] * 2]), TypeError, "parameter 0 must be a floating-point leaf Tensor"),
    (lambda p: mg.optim.SGD([np.ones(2)]), TypeError, "parameter 0 must be a floating-point leaf Tensor"),
])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make([parameter([1.0, 2.0])])


def test_a_constraint_that_changes_the_shape_is_refused_before_the_step():
    layer = mg.nn.Dense(2, kernel_constraint=lambda w: w.numpy().ravel())
    layer.build((1, 2))
    kernel = layer.kernel.numpy()
    layer.kernel.grad = mg.ones((2, 2))
    with pytest.raises(ValueError, match="returned shape \\(4,\\) for a parameter of shape \\(2, 2\\)"):
        mg.optim.SGD([layer.kernel]).step()
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel)


# ---- learning_rate, and lr (PyTorch's name) for the same thing -------------------------------

def test_learning_rate_is_the_name_and_lr_an_alias():
    for options in (dict(learning_rate=0.25), dict(lr=0.25)):
        param = parameter([1.0])
        param.grad = mg.Tensor([1.0])
        optimizer = mg.optim.SGD([param], **options)
        assert optimizer.learning_rate == optimizer.lr == 0.25
        optimizer.step()
        np.testing.assert_array_equal(param.numpy(), [0.75])


def test_the_learning_rate_may_be_given_by_position_or_left_at_its_default():
    assert mg.optim.SGD([parameter([1.0])], 0.5).learning_rate == 0.5
    assert mg.optim.SGD([parameter([1.0])]).learning_rate == mg.optim.DEFAULT_LEARNING_RATE == 0.01


def test_setting_lr_sets_learning_rate():
    optimizer = mg.optim.SGD([parameter([1.0])], learning_rate=0.1)
    optimizer.lr = 0.5
    assert optimizer.learning_rate == 0.5


def test_both_names_at_once_is_an_error_naming_both():
    with pytest.raises(TypeError, match="got both learning_rate=0.1 and lr=0.2; lr is another name for learning_rate"):
        mg.optim.SGD([parameter([1.0])], learning_rate=0.1, lr=0.2)


@pytest.mark.parametrize("options, message", [
    (dict(learning_rate=-0.1), "SGD: learning_rate must be a number in \\[0, inf\\], got -0.1"),
    (dict(lr=float("nan"), momentum=0.5), "SGD: lr must be a number in \\[0, inf\\], got nan"),
    (dict(learning_rate="0.1"), "SGD: learning_rate must be a number in \\[0, inf\\], got '0.1'"),
])
def test_a_bad_learning_rate_is_named_as_it_was_given(options, message):
    with pytest.raises(ValueError, match=message):
        mg.optim.SGD([parameter([1.0])], **options)

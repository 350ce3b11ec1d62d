"""BatchNorm's behaviour beyond Keras: PyTorch's convention, the exact population average,
numerical soundness, float16, invariances, modes and misuse."""

import doctest
import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from conftest import normal


def pytorch_reference(batches, momentum, eps, gamma, beta):
    """PyTorch's documented BatchNorm1d rule (torch.nn.BatchNorm1d's docs), in float64:
    normalize with the biased variance, update running stats with the unbiased one,
    running = (1 - momentum) * running + momentum * batch, momentum=None: 1/num_batches."""
    running_mean, running_var = np.zeros(gamma.shape), np.ones(gamma.shape)
    outputs = []
    for n, x in enumerate(batches, start=1):
        mean, var = x.mean(axis=0), x.var(axis=0)
        outputs.append(gamma * (x - mean) / np.sqrt(var + eps) + beta)
        weight = 1.0 / n if momentum is None else momentum
        m = x.shape[0]
        running_mean = (1 - weight) * running_mean + weight * mean
        running_var = (1 - weight) * running_var + weight * var * m / (m - 1)
    return outputs, running_mean, running_var


@pytest.mark.parametrize("torch_momentum", [0.1, 0.3, None])
def test_pytorch_convention_maps_to_momentum_epsilon_unbiased(backend, torch_momentum):
    batches = [normal((10, 3), seed) * 2.0 + seed for seed in range(5)]
    gamma, beta = 1.0 + normal(3, 10) * 0.1, normal(3, 11)
    expected, running_mean, running_var = pytorch_reference(batches, torch_momentum, 1e-5, gamma, beta)
    layer = mg.nn.BatchNorm(momentum=None if torch_momentum is None else 1 - torch_momentum,
                            epsilon=1e-5, unbiased=True, dtype="float64")
    layer.build((10, 3))
    layer.gamma.data[...] = mg.Tensor(gamma).data
    layer.beta.data[...] = mg.Tensor(beta).data
    for x, y in zip(batches, expected):
        np.testing.assert_allclose(layer(mg.Tensor(x)).numpy(), y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.moving_mean.numpy(), running_mean, rtol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.numpy(), running_var, rtol=1e-12)


def test_pytorch_itself_agrees_where_it_is_installed():
    torch = pytest.importorskip("torch", reason="PyTorch is optional; the NumPy reference above always runs")
    batches = [normal((8, 4, 3, 3), seed).astype(np.float32) for seed in range(3)]
    reference = torch.nn.BatchNorm2d(4)
    ours = mg.nn.BatchNorm(axis=1, momentum=0.9, epsilon=1e-5, unbiased=True)
    for x in batches:
        np.testing.assert_allclose(ours(mg.Tensor(x)).numpy(),
                                   reference(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.moving_mean.numpy(), reference.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.moving_variance.numpy(), reference.running_var.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("unbiased", [False, True])
def test_momentum_none_keeps_the_exact_population_average(backend, unbiased):
    # The Keras BatchNormalization guide's population equations (paper Algorithm 2): Eq. 3b
    # E[x] = E_B[mu_B] and Eq. 4 Var[x] = m/(m-1) E_B[sigma_B^2] (the m/(m-1) only with
    # unbiased=True).
    batches = [normal((6, 2), seed) * (seed + 1) + seed for seed in range(7)]
    layer = mg.nn.BatchNorm(momentum=None, unbiased=unbiased, dtype="float64")
    for x in batches:
        layer(mg.Tensor(x))
    correction = 6 / 5 if unbiased else 1.0
    np.testing.assert_allclose(layer.moving_mean.numpy(), np.mean([x.mean(0) for x in batches], 0), rtol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               correction * np.mean([x.var(0) for x in batches], 0), rtol=1e-12)
    assert layer.num_batches_tracked.item() == 7


def test_large_mean_float32_matches_float64(backend):
    # mean 1e4, std 1: E[x^2] - E[x]^2 would lose every digit in float32. float64 gets the
    # same float32 values (near 1e4, float32 itself is only 1e-3 apart).
    x = (normal((64, 4), 3) + 1e4).astype(np.float32)
    y32 = mg.nn.functional.batch_norm(mg.Tensor(x), axis=-1)
    y64 = mg.nn.functional.batch_norm(mg.Tensor(x.astype(np.float64)), axis=-1)
    assert y32.dtype == np.float32
    # float32 values 1e-3 apart have a float32 mean known to about 1e-3, hence the tolerance.
    np.testing.assert_allclose(y32.numpy(), y64.numpy(), atol=2e-3)
    # What the tolerance rules out: the one-pass formula in float32 is off by far more.
    one_pass_variance = (x * x).mean(axis=0) - x.mean(axis=0) ** 2
    naive = (x - x.mean(axis=0)) / np.sqrt(np.maximum(one_pass_variance, 0) + 1e-3)
    assert np.abs(naive - y64.numpy()).max() > 0.1


def test_float16_input_is_computed_in_float32_and_returned_as_float16(backend):
    # Squared deviations of about 300^2 overflow float16 (largest value 65504).
    x16 = (normal((32, 3), 1) * 300 + 1000).astype(np.float16)
    layer = mg.nn.BatchNorm()
    y = layer(mg.Tensor(x16, requires_grad=True))
    assert y.dtype == np.float16 and layer.moving_variance.dtype == np.float32
    expected = mg.nn.BatchNorm()(mg.Tensor(x16.astype(np.float32)))
    np.testing.assert_allclose(y.numpy().astype(np.float32), expected.numpy(), rtol=1e-3, atol=2e-3)
    assert np.isfinite(layer.moving_variance.numpy()).all()


def test_one_value_per_channel_is_an_error_and_changes_nothing(backend):
    layer = mg.nn.BatchNorm(axis=1)
    layer.build((1, 3, 1, 1))
    before = layer.state_dict()
    with pytest.raises(ValueError, match="more than one value per channel.*\\(1, 3, 1, 1\\)"):
        layer(mg.Tensor(np.ones((1, 3, 1, 1), np.float32)), training=True)
    for name, value in before.items():
        np.testing.assert_array_equal(layer.state_dict()[name], value)
    layer(mg.Tensor(np.ones((1, 3, 1, 1), np.float32)), training=False)  # inference is fine


def test_eval_mode_and_training_argument(backend):
    layer = mg.nn.BatchNorm(momentum=0.5)
    x = mg.Tensor(normal((8, 2)).astype(np.float32))
    layer(x)  # default mode: training, moves the statistics
    moved = layer.moving_mean.numpy()
    assert not np.allclose(moved, 0.0)
    layer.eval()
    y = layer(x)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), moved)
    expected = (x.numpy() - moved) / np.sqrt(layer.moving_variance.numpy() + 1e-3)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)
    layer(x, training=True)  # an explicit argument beats the mode
    assert not np.allclose(layer.moving_mean.numpy(), moved)


def test_frozen_layer_gets_no_gradient_and_sgd_leaves_it(backend):
    model = mg.nn.Sequential(mg.nn.Dense(3), mg.nn.BatchNorm())
    model.build((4, 2))
    optimizer = mg.optim.SGD(model.parameters(), lr=0.1)
    model[1].trainable = False
    assert [n for n, _ in model.named_parameters()] == ["0.kernel", "0.bias"]
    before = model.state_dict()
    model(mg.Tensor(normal((4, 2)).astype(np.float32)), training=True).sum().backward()
    assert model[1].gamma.grad is None and model[0].kernel.grad is not None
    optimizer.step()
    for name in ("1.gamma", "1.beta", "1.moving_mean", "1.moving_variance"):
        np.testing.assert_array_equal(model.state_dict()[name], before[name], err_msg=name)
    assert not np.array_equal(model.state_dict()["0.kernel"], before["0.kernel"])


def test_layer_uses_the_fast_kernels_by_default(backend):
    layer = mg.nn.BatchNorm()
    y = layer(mg.Tensor(normal((4, 3)).astype(np.float32), requires_grad=True))
    node = y._ctx
    while type(node).__name__ != "BatchNormFast":  # past the astype/reshape nodes, if any
        node = next(t._ctx for t in node.inputs if t._ctx is not None)
    assert type(node).__name__ == "BatchNormFast"


# ---- invariances, as properties ---------------------------------------------------------------

FEATURES = 3
shapes = st.sampled_from([((16, FEATURES), -1), ((4, FEATURES, 2, 2), 1), ((3, 2, 2, FEATURES), -1)])


def _batch(shape, axis, seed):
    """Values with a different mean (up to +-10) and spread (0.5 to 5) per feature."""
    rng = np.random.default_rng(seed)
    feature_shape = [1] * len(shape)
    feature_shape[axis] = FEATURES
    spread = rng.uniform(0.5, 5.0, FEATURES).reshape(feature_shape)
    centre = rng.uniform(-10, 10, FEATURES).reshape(feature_shape)
    return rng.standard_normal(shape) * spread + centre


@settings(max_examples=40, deadline=None)
@given(case=shapes, seed=st.integers(0, 2**31), gamma=st.floats(0.2, 3.0), beta=st.floats(-3, 3))
def test_output_mean_is_beta_and_variance_is_gamma_squared_scaled(case, seed, gamma, beta):
    shape, axis = case
    x = _batch(shape, axis, seed)
    reduce_axes = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    layer = mg.nn.BatchNorm(axis=axis, epsilon=1e-3, dtype="float64",
                            gamma_initializer=mg.nn.initializers.Constant(gamma),
                            beta_initializer=mg.nn.initializers.Constant(beta))
    y = layer(mg.Tensor(x), training=True).numpy()
    variance = x.var(axis=reduce_axes)
    np.testing.assert_allclose(y.mean(axis=reduce_axes), beta, atol=1e-9)
    np.testing.assert_allclose(y.var(axis=reduce_axes), gamma**2 * variance / (variance + 1e-3), rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(case=shapes, seed=st.integers(0, 2**31), factor=st.floats(0.1, 100.0), shift=st.floats(-100, 100))
def test_output_ignores_positive_scaling_and_shifting_of_the_input(case, seed, factor, shift):
    shape, axis = case
    x = _batch(shape, axis, seed)
    layer = mg.nn.BatchNorm(axis=axis, epsilon=1e-12, dtype="float64")  # eps ~ 0: exact invariance
    base = layer(mg.Tensor(x), training=True).numpy()
    np.testing.assert_allclose(layer(mg.Tensor(x * factor), training=True).numpy(), base, atol=1e-7)
    np.testing.assert_allclose(layer(mg.Tensor(x + shift), training=True).numpy(), base, atol=1e-7)


# ---- misuse -----------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    (dict(momentum=1.5), "momentum must be in \\[0, 1\\] or None, got 1.5"),
    (dict(momentum=-0.1), "momentum must be in \\[0, 1\\] or None, got -0.1"),
    (dict(epsilon=0.0), "epsilon must be a finite number > 0 .*got 0.0"),
    (dict(gamma_initializer="glorot"), "unknown initializer 'glorot'"),
    (dict(beta_regularizer="l3"), "unknown regularizer 'l3'"),
    (dict(gamma_constraint="positive"), "unknown constraint 'positive'"),
])
def test_bad_arguments_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        mg.nn.BatchNorm(**options)


def test_axis_must_be_an_int_and_exist():
    with pytest.raises(TypeError, match="axis must be an int or a tuple of ints, got 1.0"):
        mg.nn.BatchNorm(axis=1.0)
    layer = mg.nn.BatchNorm(axis=3)
    with pytest.raises(ValueError, match="axis=3.*input shape \\(4, 2\\)"):
        layer(mg.Tensor(np.ones((4, 2), np.float32)))
    assert not layer.built and layer.state_dict() == {}


def test_input_of_another_shape_after_building_is_an_error(backend):
    layer = mg.nn.BatchNorm()
    layer(mg.Tensor(np.ones((4, 3), np.float32)))
    before = layer.state_dict()
    with pytest.raises(ValueError, match="built for 2-D inputs with 3 features.*\\(4, 5\\)"):
        layer(mg.Tensor(np.ones((4, 5), np.float32)))
    with pytest.raises(ValueError, match="built for 2-D inputs.*\\(4, 1, 3\\)"):
        layer(mg.Tensor(np.ones((4, 1, 3), np.float32)))
    for name, value in before.items():
        np.testing.assert_array_equal(layer.state_dict()[name], value)


def test_functional_batch_norm_checks_its_arguments(backend):
    x = mg.Tensor(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="gamma has shape \\(2,\\), expected \\(3,\\)"):
        mg.nn.functional.batch_norm(x, mg.ones(2))
    with pytest.raises(ValueError, match="form 'closed-form' is not one of \\('fast', 'closed_form', 'composite'\\)"):
        mg.nn.functional.batch_norm(x, form="closed-form")
    with pytest.raises(ValueError, match="inference .* needs moving_mean"):
        mg.nn.functional.batch_norm(x, training=False)
    with pytest.raises(ValueError, match="momentum must be a number in \\[0, 1\\], got 2"):
        mg.nn.functional.batch_norm(x, mg.ones(3), momentum=2)


# ---- help(mg.nn.BatchNorm) --------------------------------------------------------------------

def test_the_docstring_documents_every_argument_and_its_example_runs():
    parameters = [p.name for p in inspect.signature(mg.nn.BatchNorm.__init__).parameters.values()
                  if p.name != "self" and p.kind != p.VAR_KEYWORD]
    parameters += ["dtype", "trainable"]  # Module's own, passed up through **kwargs
    docstring = inspect.getdoc(mg.nn.BatchNorm)
    missing = [name for name in parameters if f"\n    {name}: " not in docstring]
    assert not missing, f"BatchNorm's docstring has no Args entry for {missing}"
    for section in ("Args:", "Call arguments:", "Weights", "Example:"):
        assert section in docstring, section
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder(recurse=False).find(mg.nn.BatchNorm, "BatchNorm", globs={}):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0

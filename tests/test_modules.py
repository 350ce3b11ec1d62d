"""Module, Dense, ReLU, Sequential: building, parameters, modes, backends, regularizers,
constraints and initializers."""

import numpy as np
import pytest

import minigrad as mg
from conftest import normal
from minigrad.nn import constraints, initializers, regularizers


def small_model():
    return mg.nn.Sequential(mg.nn.Dense(4, use_bias=False), mg.nn.BatchNorm(), mg.nn.ReLU(), mg.nn.Dense(2))


def test_layers_build_on_the_first_call_from_the_input_shape(backend):
    model = small_model()
    assert not model.built and model.parameters() == []
    y = model(mg.Tensor(np.ones((5, 3), np.float32)))
    assert y.shape == (5, 2) and y.backend == backend
    assert model[0].kernel.shape == (3, 4) and model[3].kernel.shape == (4, 2)
    assert model[1].gamma.shape == (4,) and model[1].moving_variance.shape == (4,)
    assert all(w.backend == backend for _, w in model.named_weights())


def test_build_eagerly_with_an_unknown_batch_size():
    model = small_model()
    model.build((None, 3))
    assert model.built and model[3].bias.shape == (2,)
    assert model.compute_output_shape((None, 3)) == (None, 2)


def test_parameters_are_trainable_weights_in_a_stable_order():
    model = small_model()
    model.build((2, 3))
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.kernel", "1.gamma", "1.beta", "3.kernel", "3.bias"]
    assert model.parameters() == [model[0].kernel, model[1].gamma, model[1].beta, model[3].kernel, model[3].bias]
    assert all(p.requires_grad for p in model.parameters())
    assert list(model.state_dict()) == [
        "0.kernel", "1.gamma", "1.beta", "1.moving_mean", "1.moving_variance",
        "1.num_batches_tracked", "3.kernel", "3.bias",
    ]
    assert not model[1].moving_mean.requires_grad


def test_freezing_a_model_freezes_every_layer_and_unfreezing_restores_them():
    model = small_model()
    model.build((2, 3))
    model.trainable = False
    assert model.parameters() == [] and not model[1].trainable
    assert not any(w.requires_grad for _, w in model.named_weights())
    model.trainable = True
    assert len(model.parameters()) == 5 and all(p.requires_grad for p in model.parameters())


def test_train_and_eval_set_every_layer():
    model = small_model()
    assert model.training and model[1].training
    assert model.eval() is model and not model[1].training
    model.train()
    assert model[1].training


def test_dense_computes_x_kernel_plus_bias(backend):
    layer = mg.nn.Dense(3, activation="relu")
    x = normal((4, 2)).astype(np.float32)
    y = layer(mg.Tensor(x)).numpy()
    expected = np.maximum(x @ layer.kernel.numpy() + layer.bias.numpy(), 0)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    assert layer(mg.Tensor(normal((2, 5, 2)).astype(np.float32))).shape == (2, 5, 3)


def test_dense_fed_a_wrong_feature_count_after_building_names_both(backend):
    layer = mg.nn.Dense(3)
    layer(mg.Tensor(np.ones((4, 2), np.float32)))
    kernel = layer.kernel.numpy()
    with pytest.raises(ValueError, match="built for inputs with 2 features .* got input shape \\(4, 5\\)"):
        layer(mg.Tensor(np.ones((4, 5), np.float32)))
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel)


@pytest.mark.parametrize("make, error, message", [
    (lambda: mg.nn.Dense(0), ValueError, "units must be a positive int, got 0"),
    (lambda: mg.nn.Dense(2.5), ValueError, "units must be a positive int, got 2.5"),
    (lambda: mg.nn.Dense(2, activation="tanh"), ValueError, "unknown activation 'tanh'"),
    (lambda: mg.nn.Dense(2, dtype="int32"), ValueError, "dtype must be a float type, got int32"),
    (lambda: mg.nn.Sequential(mg.nn.Dense(2), "relu"), TypeError, "expected a Module, got str"),
])
def test_bad_layer_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("make, message", [
    (lambda: mg.nn.BatchNorm(momentun=0.9),
     "^BatchNorm got an unexpected keyword argument 'momentun'; did you mean 'momentum'\\?$"),
    (lambda: mg.nn.Dense(3, use_bais=False),
     "^Dense got an unexpected keyword argument 'use_bais'; did you mean 'use_bias'\\?$"),
    (lambda: mg.nn.Dense(3, dtpye="float64"), "Dense got .* 'dtpye'; did you mean 'dtype'\\?$"),
    (lambda: mg.nn.Sequential(mg.nn.ReLU(), trainabel=False), "Sequential got .* did you mean 'trainable'"),
    (lambda: mg.nn.ReLU(alpha=0.1),
     "^ReLU got an unexpected keyword argument 'alpha'; valid keyword arguments: dtype, trainable$"),
])
def test_a_misspelt_keyword_names_the_layer_and_the_closest_argument(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_a_layer_of_ones_own_that_passes_kwargs_up_gets_the_same_hint():
    class Scale(mg.nn.Module):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def forward(self, x, training=None):
            return x * self.factor

    with pytest.raises(TypeError, match="^Scale got an unexpected keyword argument 'factr'; did you mean 'factor'"):
        Scale(factr=3.0)
    assert Scale(factor=3.0, trainable=False).factor == 3.0


def test_building_twice_is_an_error_not_a_silent_reinitialization():
    layer = mg.nn.Dense(2)
    layer.build((3, 4))
    with pytest.raises(RuntimeError, match="'kernel' exists already"):
        layer.build((3, 4))


def test_relu_layer_and_sequential_container(backend):
    model = mg.nn.Sequential([mg.nn.ReLU(), mg.nn.ReLU()])
    assert len(model) == 2 and isinstance(model[0], mg.nn.ReLU)
    np.testing.assert_array_equal(model(mg.Tensor([-1.0, 2.0])).numpy(), [0.0, 2.0])
    assert "(0): ReLU()" in repr(model)


def test_weights_are_float64_when_the_layer_dtype_says_so():
    layer = mg.nn.Dense(2, dtype="float64")
    layer.build((1, 3))
    assert layer.kernel.dtype == np.float64
    assert layer.kernel.grad is None


def test_float64_data_through_a_float32_layer_gives_float32_gradients():
    layer = mg.nn.Dense(2)
    layer(mg.Tensor(normal((4, 3)))).sum().backward()
    assert layer.kernel.grad.dtype == np.float32


# ---- regularizers and constraints ------------------------------------------------------------

def test_regularization_loss_sums_the_keras_penalties(backend):
    layer = mg.nn.BatchNorm(gamma_regularizer="l2", beta_regularizer=regularizers.L1(0.5))
    layer.build((2, 3))
    layer.gamma.data[...] = mg.Tensor([1.0, -2.0, 3.0]).data
    layer.beta.data[...] = mg.Tensor([-1.0, 0.5, 0.0]).data
    loss = layer.regularization_loss()
    assert loss.item() == pytest.approx(0.01 * (1 + 4 + 9) + 0.5 * (1 + 0.5))
    loss.backward()
    np.testing.assert_allclose(layer.gamma.grad.numpy(), 0.02 * np.array([1.0, -2.0, 3.0]), rtol=1e-6)
    np.testing.assert_allclose(layer.beta.grad.numpy(), 0.5 * np.array([-1.0, 1.0, 0.0]), rtol=1e-6)
    assert mg.nn.Dense(2).regularization_loss().item() == 0.0


def test_regularization_loss_lives_where_the_model_lives(backend):
    model = mg.nn.Sequential(mg.nn.Dense(2))
    with mg.use_backend("numpy"):
        model.build((1, 3))
    model.to(backend)
    assert model.regularization_loss().backend == backend  # no regularizers: a zero, on `backend`


def test_regularizers_match_keras():
    import keras

    weight = normal((3, 4))
    for ours, theirs in [(regularizers.get("l1"), keras.regularizers.get("l1")),
                         (regularizers.get("l2"), keras.regularizers.get("l2")),
                         (regularizers.L1L2(0.3, 0.2), keras.regularizers.L1L2(0.3, 0.2))]:
        # Keras stores the factor as float32, hence float32 agreement.
        np.testing.assert_allclose(ours(mg.Tensor(weight)).item(), float(theirs(weight)), rtol=1e-6)


@pytest.mark.parametrize("name, keras_name", [
    ("non_neg", "non_neg"), ("unit_norm", "unit_norm"), ("max_norm", "max_norm"),
    ("min_max_norm", "min_max_norm"),
])
def test_constraints_match_keras(name, keras_name):
    import keras

    for weight in (normal((4, 3)) * 3.0, normal(5, 1) * 0.1):
        ours = constraints.get(name)(mg.Tensor(weight)).numpy()
        theirs = np.asarray(keras.constraints.get(keras_name)(weight))
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12)


def test_constraints_are_applied_after_each_optimizer_step(backend):
    layer = mg.nn.BatchNorm(gamma_constraint="non_neg", beta_constraint=constraints.MaxNorm(1.0))
    layer.build((4, 2))
    optimizer = mg.optim.SGD(layer.parameters(), lr=10.0)
    layer.gamma.grad = mg.Tensor([1.0, -1.0])  # pushes gamma[0] to 1 - 10 = -9
    layer.beta.grad = mg.Tensor([-3.0, 4.0])  # beta becomes (30, -40), norm 50
    optimizer.step()
    np.testing.assert_allclose(layer.gamma.numpy(), [0.0, 11.0])
    np.testing.assert_allclose(layer.beta.numpy(), [0.6, -0.8], rtol=1e-6)


def test_unknown_regularizer_and_constraint_types_are_errors():
    with pytest.raises(TypeError, match="a regularizer must be None, a name or a callable"):
        regularizers.get(3)
    with pytest.raises(TypeError, match="a constraint must be None, a name or a callable"):
        constraints.get(3)
    with pytest.raises(ValueError, match="factor l2 must be a finite number >= 0, got -1"):
        regularizers.L2(-1)


# ---- initializers ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, fan, scale, kind", [
    ("glorot_uniform", "avg", 1.0, "uniform"), ("glorot_normal", "avg", 1.0, "normal"),
    ("he_uniform", "in", 2.0, "uniform"), ("he_normal", "in", 2.0, "normal"),
])
def test_variance_scaling_initializers_have_the_keras_spread(name, fan, scale, kind):
    mg.manual_seed(0)
    fan_in, fan_out = 200, 300
    values = initializers.get(name)((fan_in, fan_out), np.float32)
    n = (fan_in + fan_out) / 2 if fan == "avg" else fan_in
    std = np.sqrt(scale / n)
    assert values.dtype == np.float32 and values.shape == (fan_in, fan_out)
    assert values.std() == pytest.approx(std, rel=0.02)
    bound = np.sqrt(3) * std if kind == "uniform" else 2 * std / 0.87962566103423978
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.95 * bound


def test_initializers_reproduce_under_manual_seed_and_accept_callables():
    mg.manual_seed(3)
    first = mg.nn.Dense(5)
    first.build((2, 4))
    mg.manual_seed(3)
    second = mg.nn.Dense(5)
    second.build((2, 4))
    np.testing.assert_array_equal(first.kernel.numpy(), second.kernel.numpy())
    layer = mg.nn.Dense(2, kernel_initializer=lambda shape, dtype: np.full(shape, 0.5, dtype))
    layer.build((1, 3))
    np.testing.assert_array_equal(layer.kernel.numpy(), np.full((3, 2), 0.5))
    assert initializers.get("random_normal")((1000,)).std() == pytest.approx(0.05, rel=0.1)
    assert (initializers.get("ones")((2,)) == 1).all() and (initializers.get("zeros")((2,)) == 0).all()


def test_bad_initializers_are_named():
    with pytest.raises(TypeError, match="an initializer must be a name or a callable\\(shape, dtype\\), got None"):
        initializers.get(None)
    with pytest.raises(ValueError, match="unknown initializer 'uniform'"):
        mg.nn.Dense(2, kernel_initializer="uniform").build((1, 2))
    with pytest.raises(ValueError, match="initializer of 'kernel' returned shape \\(2,\\), expected \\(2, 2\\)"):
        mg.nn.Dense(2, kernel_initializer=lambda shape, dtype: np.zeros(2)).build((1, 2))


def test_batch_norm_without_scale_or_center_has_no_gamma_or_beta():
    layer = mg.nn.BatchNorm(center=False, scale=False)
    layer.build((4, 3))
    assert layer.gamma is None and layer.beta is None and layer.parameters() == []
    assert list(layer.state_dict()) == ["moving_mean", "moving_variance", "num_batches_tracked"]
    only_scale = mg.nn.BatchNorm(center=False)
    only_scale.build((4, 3))
    assert [n for n, _ in only_scale.named_parameters()] == ["gamma"] and only_scale.beta is None

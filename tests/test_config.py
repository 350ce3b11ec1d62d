"""get_config() / from_config() of every layer, and the serialized form of initializers,
regularizers and constraints, checked against the constructor's arguments and against Keras 3.
"""

import copy
import inspect
import json

import numpy as np
import pytest

import keras  # noqa: E402  (conftest set KERAS_BACKEND=numpy first)
import minigrad as mg
from minigrad.nn import constraints, initializers, regularizers

assert keras.backend.backend() == "numpy", "the reference must be Keras's NumPy backend"

KINDS = {"_initializer": (initializers, keras.initializers),
         "_regularizer": (regularizers, keras.regularizers),
         "_constraint": (constraints, keras.constraints)}

# Keras 3.15's VarianceScaling family also takes input_axes and output_axes (which axes count
# as fan in and fan out); minigrad always counts the last two, so it has no such keys.
KERAS_ONLY_KEYS = {"input_axes", "output_axes"}


def kind_of(argument):
    """(our module, Keras's module) for an *_initializer, *_regularizer or *_constraint argument."""
    return next((kinds for suffix, kinds in KINDS.items() if argument.endswith(suffix)), None)


def ours_and_keras(spec):
    """Constructor arguments for our layer and for Keras's from one spec, in which an identifier
    is written ("ClassName", {arguments}) and becomes each library's own object."""
    ours, theirs = {}, {}
    for argument, value in spec.items():
        if kind_of(argument) and isinstance(value, tuple):
            (our_module, keras_module), (class_name, arguments) = kind_of(argument), value
            ours[argument] = getattr(our_module, class_name)(**arguments)
            theirs[argument] = getattr(keras_module, class_name)(**arguments)
        else:
            ours[argument] = theirs[argument] = value
    return ours, theirs


def expected_config(arguments):
    """What get_config() should hold for constructor `arguments`: identifiers serialized by
    their module, a dtype by its name, a list axis as the tuple BatchNorm keeps."""
    expected = {}
    for argument, value in arguments.items():
        if kind_of(argument):
            value = kind_of(argument)[0].serialize(value)
        elif argument == "dtype":
            value = np.dtype(value).name
        elif argument == "axis" and isinstance(value, list):
            value = tuple(value)
        expected[argument] = value
    return expected


def keyword_arguments(cls):
    """Every keyword argument cls(...) takes, by inspecting the signatures (Module's too)."""
    names = {"dtype", "trainable"}
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            names.add(p.name)
    return names


# Every argument of each layer, none at its default (identifiers given as objects with
# non-default arguments, or by name).
DENSE = dict(
    units=5, activation="sigmoid", use_bias=False,
    kernel_initializer=("RandomNormal", dict(mean=0.1, stddev=0.2, seed=4)),
    bias_initializer=("Constant", dict(value=0.5)),
    kernel_regularizer=("L1L2", dict(l1=0.1, l2=0.2)), bias_regularizer="l1",
    kernel_constraint=("MinMaxNorm", dict(min_value=0.5, max_value=2.0, rate=0.5, axis=1)),
    bias_constraint=("NonNeg", {}), dtype="float64", trainable=False,
)
BATCH_NORM = dict(
    axis=1, momentum=0.9, epsilon=1e-4, center=False, scale=True,
    beta_initializer=("Constant", dict(value=0.3)),
    gamma_initializer=("VarianceScaling", dict(scale=2.0, mode="fan_out", distribution="uniform", seed=1)),
    moving_mean_initializer="random_normal",
    moving_variance_initializer=("RandomNormal", dict(mean=1.0, stddev=0.1, seed=2)),
    beta_regularizer=("L2", dict(l2=0.3)), gamma_regularizer=("L1", dict(l1=0.2)),
    beta_constraint=("UnitNorm", dict(axis=0)), gamma_constraint=("MaxNorm", dict(max_value=1.5, axis=0)),
    renorm=True, renorm_clipping={"rmax": 2.0, "rmin": 0.5, "dmax": 1.0}, renorm_momentum=0.8,
    synchronized=False, trainable=False,
)
# The arguments Keras does not have, or only on another backend.
BATCH_NORM_ONLY_OURS = dict(synchronized=True, unbiased=False, track_running_stats=True, dtype="float64")

LAYERS = {
    "Dense default": lambda: mg.nn.Dense(3),
    "Dense all arguments": lambda: mg.nn.Dense(**ours_and_keras(DENSE)[0]),
    "ReLU": lambda: mg.nn.ReLU(),
    "ReLU frozen": lambda: mg.nn.ReLU(trainable=False),
    "Sigmoid float64": lambda: mg.nn.Sigmoid(dtype="float64"),
    "BatchNorm default": lambda: mg.nn.BatchNorm(),
    "BatchNorm all arguments": lambda: mg.nn.BatchNorm(
        **{**ours_and_keras(BATCH_NORM)[0], **BATCH_NORM_ONLY_OURS}),
    "BatchNorm PyTorch switches": lambda: mg.nn.BatchNorm(
        axis=[1, 2], momentum=None, epsilon=1e-5, unbiased=True, track_running_stats=False),
    "Sequential": lambda: mg.nn.Sequential(
        mg.nn.Dense(**ours_and_keras(DENSE)[0]), mg.nn.BatchNorm(axis=-1, momentum=0.5), mg.nn.ReLU(),
        mg.nn.Sequential(mg.nn.Dense(2), mg.nn.Sigmoid()), trainable=False),
}


# ---- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
def test_a_round_trip_gives_an_equal_unbuilt_layer(name):
    layer = LAYERS[name]()
    layer(np.ones((2, 5, 4), np.float32) if "switches" in name else np.ones((4, 5), np.float32))
    config = layer.get_config()
    rebuilt = type(layer).from_config(config)
    assert type(rebuilt) is type(layer) and not rebuilt.built
    assert rebuilt.get_config() == config
    assert rebuilt.dtype == layer.dtype and rebuilt.trainable == layer.trainable
    # Plain data: it survives JSON (a tuple axis comes back a list, which BatchNorm takes).
    assert type(layer).from_config(json.loads(json.dumps(config))).get_config() == config


@pytest.mark.parametrize("cls, spec", [(mg.nn.Dense, DENSE),
                                       (mg.nn.BatchNorm, {**BATCH_NORM, **BATCH_NORM_ONLY_OURS})],
                         ids=["Dense", "BatchNorm"])
def test_the_config_holds_every_constructor_argument_as_given(cls, spec):
    arguments = ours_and_keras(spec)[0]
    assert set(arguments) == keyword_arguments(cls), "the spec should give every argument"
    assert cls(**arguments).get_config() == expected_config(arguments)


def test_a_module_argument_is_picked_up_without_code_and_a_missing_attribute_is_named():
    class Toy(mg.nn.Module):
        def __init__(self, size, scale=2.0, **kwargs):
            super().__init__(**kwargs)
            self.size, self.scale = size, scale

    class Forgetful(Toy):
        def __init__(self, size, offset=0.0, **kwargs):
            super().__init__(size, **kwargs)
            self._offset = offset  # not under its own name

    arguments = dict(size=3, scale=0.5, dtype="float64", trainable=False)
    assert Toy(**arguments).get_config() == expected_config(arguments)
    assert Toy.from_config(Toy(**arguments).get_config()).get_config() == expected_config(arguments)
    layer = Forgetful(3, offset=1.0)
    before = dict(vars(layer))
    with pytest.raises(AttributeError, match="Forgetful.get_config: constructor argument 'offset'"):
        layer.get_config()
    assert vars(layer) == before


@pytest.mark.parametrize("name", ["Dense all arguments", "BatchNorm all arguments", "Sequential"])
def test_a_rebuilt_layer_built_with_the_same_seed_has_the_same_weights(name):
    x = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    original = LAYERS[name]()
    rebuilt = type(original).from_config(original.get_config())
    mg.manual_seed(11)
    original.build(x.shape)
    mg.manual_seed(11)
    rebuilt.build(x.shape)
    weights, again = original.state_dict(), rebuilt.state_dict()
    assert weights and list(weights) == list(again)
    for key in weights:
        np.testing.assert_array_equal(again[key], weights[key], err_msg=key)
    np.testing.assert_array_equal(rebuilt(x, training=True).numpy(), original(x, training=True).numpy())


def test_a_config_is_a_copy_and_from_config_keeps_none_of_the_dict():
    layer = mg.nn.BatchNorm(renorm=True, renorm_clipping={"rmax": 2.0})
    config = layer.get_config()
    config["renorm_clipping"]["rmax"] = 99.0
    assert layer.renorm_clipping == {"rmax": 2.0}
    rebuilt = mg.nn.BatchNorm.from_config(config)
    config["renorm_clipping"]["rmax"] = 5.0
    assert rebuilt.renorm_clipping == {"rmax": 99.0}


# ---- against Keras ------------------------------------------------------------------------------

def assert_like_keras(ours, theirs, where):
    """Our serialized value against Keras's: the same keys, class_name and config (with our
    module in place of Keras's), floats to float32 precision (Keras keeps L1's factor in float32)."""
    if isinstance(theirs, dict) and "class_name" in theirs:
        assert isinstance(ours, dict) and set(ours) == set(theirs), where
        assert ours["module"] == theirs["module"].replace("keras", "minigrad.nn", 1), where
        assert (ours["class_name"], ours["registered_name"]) == (theirs["class_name"], theirs["registered_name"])
        extra = set(theirs["config"]) - set(ours["config"])
        assert extra <= KERAS_ONLY_KEYS and all(theirs["config"][k] is None for k in extra), where
        assert set(ours["config"]) <= set(theirs["config"]), where
        for key, value in ours["config"].items():
            assert_like_keras(value, theirs["config"][key], f"{where}.{key}")
    elif isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=1e-6), where
    else:
        assert ours == theirs, where


def keras_dense(**arguments):
    return keras.layers.Dense(**arguments)


def keras_batch_norm(**arguments):
    return keras.layers.BatchNormalization(**arguments)


SHARED_DENSE = {"units", "activation", "use_bias", "kernel_initializer", "bias_initializer", "kernel_regularizer",
                "bias_regularizer", "kernel_constraint", "bias_constraint", "trainable"}
SHARED_BATCH_NORM = {"axis", "momentum", "epsilon", "center", "scale", "beta_initializer", "gamma_initializer",
                     "moving_mean_initializer", "moving_variance_initializer", "beta_regularizer",
                     "gamma_regularizer", "beta_constraint", "gamma_constraint", "renorm", "renorm_clipping",
                     "renorm_momentum", "synchronized", "trainable"}


@pytest.mark.parametrize("ours_cls, keras_cls, spec, shared", [
    (mg.nn.Dense, keras.layers.Dense, dict(units=3), SHARED_DENSE),
    (mg.nn.Dense, keras.layers.Dense, DENSE, SHARED_DENSE),
    (mg.nn.Dense, keras.layers.Dense, dict(units=2, activation="relu", kernel_initializer="he_normal",
                                           bias_initializer="ones", kernel_regularizer="l2",
                                           bias_regularizer="l1", kernel_constraint="max_norm",
                                           bias_constraint="unit_norm"), SHARED_DENSE),
    (mg.nn.BatchNorm, keras.layers.BatchNormalization, {}, SHARED_BATCH_NORM),
    (mg.nn.BatchNorm, keras.layers.BatchNormalization, BATCH_NORM, SHARED_BATCH_NORM),
    (mg.nn.BatchNorm, keras.layers.BatchNormalization, dict(renorm=True, gamma_initializer="glorot_normal",
                                                            beta_constraint="min_max_norm",
                                                            moving_variance_initializer="he_normal"),
     SHARED_BATCH_NORM),
], ids=["Dense default", "Dense all arguments", "Dense by names", "BatchNorm default",
        "BatchNorm all arguments", "BatchNorm by names"])
def test_our_config_matches_keras_on_the_keys_both_have(ours_cls, keras_cls, spec, shared):
    ours_arguments, keras_arguments = ours_and_keras(spec)
    ours = ours_cls(**ours_arguments).get_config()
    theirs = keras_cls(**keras_arguments).get_config()
    assert shared <= set(ours) & set(theirs)
    for key in set(ours) & set(theirs) - {"dtype"}:
        assert_like_keras(ours[key], theirs[key], key)
    assert ours["dtype"] == theirs["dtype"]["config"]["name"]  # Keras: a DTypePolicy, we: its name


def keras_class(module, name):
    return getattr({initializers: keras.initializers, regularizers: keras.regularizers,
                    constraints: keras.constraints}[module], name)


@pytest.mark.parametrize("module", [initializers, regularizers, constraints], ids=lambda m: m.__name__)
def test_every_class_and_name_serializes_as_keras_does_and_loads_back(module):
    for name, cls in module.CLASSES.items():
        ours = module.serialize(cls())
        assert_like_keras(ours, keras.saving.serialize_keras_object(keras_class(module, name)()), name)
        assert type(module.get(ours)) is cls and module.serialize(module.get(ours)) == ours
    for name, cls in module.BY_NAME.items():
        assert module.serialize(name) == module.serialize(cls())
        assert module.serialize(module.get(name)) == module.serialize(cls())


@pytest.mark.parametrize("spec", [DENSE, BATCH_NORM], ids=["Dense", "BatchNorm"])
def test_get_takes_keras_own_dicts(spec):
    keras_layer = (keras_dense if "units" in spec else keras_batch_norm)(**ours_and_keras(spec)[1])
    checked = 0
    for argument, value in keras_layer.get_config().items():
        if kind_of(argument) and value is not None:
            value = {**value, "config": {k: v for k, v in value["config"].items() if k not in KERAS_ONLY_KEYS}}
            module = kind_of(argument)[0]
            assert_like_keras(module.serialize(module.get(value)), keras_layer.get_config()[argument], argument)
            checked += 1
    assert checked >= 6


# ---- identifiers on their own -------------------------------------------------------------------

def test_a_seeded_initializer_repeats_itself_and_an_unseeded_one_follows_manual_seed():
    for make in [lambda seed: initializers.RandomNormal(seed=seed), lambda seed: initializers.HeNormal(seed),
                 lambda seed: initializers.GlorotUniform(seed)]:
        seeded = make(3)
        np.testing.assert_array_equal(seeded((4, 5)), seeded((4, 5)))
        assert not np.array_equal(seeded((4, 5)), make(4)((4, 5)))
        unseeded = make(None)
        mg.manual_seed(5)
        first = unseeded((4, 5))
        assert not np.array_equal(first, unseeded((4, 5)))
        mg.manual_seed(5)
        np.testing.assert_array_equal(first, unseeded((4, 5)))
    with pytest.raises(ValueError, match="RandomNormal: seed must be None or an int >= 0, got -1"):
        initializers.RandomNormal(seed=-1)


def test_serializing_none():
    assert regularizers.serialize(None) is None and constraints.serialize(None) is None
    with pytest.raises(TypeError, match="an initializer must be a name"):
        initializers.serialize(None)


# ---- errors, and nothing changed by them --------------------------------------------------------

class MyZeros(initializers.Zeros):
    """Not one of minigrad's: from_config could not find it."""


class MyLayer(mg.nn.Module):
    def forward(self, x, training=None):
        return x


@pytest.mark.parametrize("make, argument", [
    (lambda: mg.nn.Dense(2, kernel_initializer=lambda shape, dtype: np.zeros(shape, dtype)), "kernel_initializer"),
    (lambda: mg.nn.Dense(2, bias_initializer=MyZeros()), "bias_initializer"),
    (lambda: mg.nn.BatchNorm(gamma_regularizer=lambda w: (w * w).sum()), "gamma_regularizer"),
    (lambda: mg.nn.BatchNorm(beta_constraint=lambda w: w), "beta_constraint"),
], ids=["lambda initializer", "subclassed initializer", "lambda regularizer", "lambda constraint"])
def test_a_callable_that_is_not_ours_cannot_be_serialized(make, argument):
    layer = make()
    before = dict(vars(layer))
    with pytest.raises(TypeError, match=f"{type(layer).__name__}.get_config: argument '{argument}': cannot "
                                        "serialize .* a config can hold only .*'s own .*(Constant|L1L2|NonNeg)"):
        layer.get_config()
    assert vars(layer) == before
    with pytest.raises(TypeError, match="cannot serialize"):
        kind_of(argument)[0].serialize(getattr(layer, argument))


def test_a_callable_activation_or_a_foreign_layer_cannot_be_serialized():
    layer = mg.nn.Dense(2, activation=lambda y: y * 2)
    before = dict(vars(layer))
    with pytest.raises(TypeError, match="Dense.get_config: argument 'activation': .* linear, relu, sigmoid"):
        layer.get_config()
    assert vars(layer) == before
    model = mg.nn.Sequential(mg.nn.ReLU(), MyLayer())
    with pytest.raises(TypeError, match="Sequential.get_config: layer 1: cannot serialize the layer .*Dense"):
        model.get_config()
    assert len(model) == 2


BAD_DICTS = [
    ({"class_name": "Nope", "config": {}},
     "unknown initializer class_name 'Nope'; expected one of .*GlorotUniform"),
    ({"class_name": "RandomNormal", "config": {"stdev": 1.0}},
     r"RandomNormal: unknown config key\(s\) \['stdev'\]; expected some of \['mean', 'stddev', 'seed'\]"),
    ({"class_name": "Zeros", "cfg": {}}, r"unknown key\(s\) \['cfg'\]; expected keys among"),
    ({"module": "keras.layers", "class_name": "Zeros"}, "module 'keras.layers' is not one of"),
    ({"class_name": "Zeros", "registered_name": "my>Zeros"}, "registered_name 'my>Zeros'"),
    ({"class_name": "Zeros", "config": [1]}, "'config' must be a dict"),
]


@pytest.mark.parametrize("bad, message", BAD_DICTS, ids=lambda v: str(v)[:30])
def test_a_bad_dict_is_a_value_error_naming_it_and_changes_nothing(bad, message):
    original = copy.deepcopy(bad)
    with pytest.raises(ValueError, match=message):
        initializers.get(bad)
    config = mg.nn.Dense(3).get_config()
    config["kernel_initializer"] = bad
    saved = copy.deepcopy(config)
    with pytest.raises(ValueError, match=message):
        mg.nn.Dense.from_config(config)
    assert bad == original and config == saved


def test_bad_regularizer_and_constraint_dicts():
    with pytest.raises(ValueError, match="unknown regularizer class_name 'L3'; expected one of .*L1L2"):
        regularizers.get({"class_name": "L3", "config": {}})
    with pytest.raises(ValueError, match=r"MaxNorm: unknown config key\(s\) \['min_value'\]"):
        constraints.get({"class_name": "MaxNorm", "config": {"min_value": 1.0}})
    with pytest.raises(ValueError, match="regularizer factor l2 must be a finite number >= 0"):
        regularizers.get({"class_name": "L2", "config": {"l2": -1.0}})


def test_a_misspelt_config_key_names_the_closest_argument():
    config = mg.nn.BatchNorm().get_config()
    config["momentm"] = config.pop("momentum")
    saved = copy.deepcopy(config)
    with pytest.raises(TypeError, match="BatchNorm got an unexpected keyword argument 'momentm'; "
                                        "did you mean 'momentum'"):
        mg.nn.BatchNorm.from_config(config)
    with pytest.raises(TypeError, match="ReLU got an unexpected keyword argument 'dtpe'; did you mean 'dtype'"):
        mg.nn.ReLU.from_config({"dtpe": "float32"})
    assert config == saved


@pytest.mark.parametrize("entry, error, message", [
    ({"class_name": "LSTM", "config": {}}, ValueError, "layer 1: unknown layer class_name 'LSTM'"),
    ({"class_name": "Module", "config": {}}, ValueError, "layer 1: unknown layer class_name 'Module'"),
    ({"class_name": "Parameter", "config": {}}, ValueError, "layer 1: unknown layer class_name 'Parameter'"),
    ({"module": "keras.layers", "class_name": "Dense", "config": {"units": 2}}, ValueError, "layer 1: .*module"),
    ({"class_name": "Dense", "config": {"units": 2, "use_bais": False}}, TypeError,
     "layer 1: Dense got an unexpected keyword argument 'use_bais'; did you mean 'use_bias'"),
    ("Dense", ValueError, "layer 1: a layer config must be a dict"),
], ids=["unknown", "Module", "Parameter", "keras module", "misspelt", "not a dict"])
def test_sequential_rebuilds_only_minigrads_layers(entry, error, message):
    config = mg.nn.Sequential(mg.nn.Dense(2), mg.nn.ReLU()).get_config()
    config["layers"][1] = entry
    saved = copy.deepcopy(config)
    with pytest.raises(error, match=f"Sequential.from_config: {message}"):
        mg.nn.Sequential.from_config(config)
    assert config == saved

"""Dense, ReLU, Sigmoid and Sequential: the layers around BatchNorm."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from minigrad.nn import config as configs
from minigrad.nn import constraints, initializers, regularizers
from minigrad.nn import functional as F
from minigrad.nn.module import Module
from minigrad.tensor import Tensor

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor] | None] = {
    "linear": None, "relu": F.relu, "sigmoid": F.sigmoid,
}


def resolve_activation(layer_name: str, activation: Any) -> Callable[[Tensor], Tensor] | None:
    """The function an activation argument names: one of ACTIVATIONS by name, None, or a
    callable as given; an unknown name is a ValueError naming the layer."""
    if not isinstance(activation, str):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"{layer_name}: unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}, "
            "None, or a callable"
        )
    return ACTIVATIONS[activation]


def resolve_weight_options(layer: Module, **options: Any) -> None:
    """Look up each *_initializer, *_regularizer and *_constraint argument now, and store it
    under its own name, so that a misspelt name or a bad config dict fails at construction."""
    lookup = {"initializer": initializers.get, "regularizer": regularizers.get, "constraint": constraints.get}
    for name, value in options.items():
        setattr(layer, name, lookup[name.rsplit("_", 1)[1]](value))


def activation_name(layer: Module) -> str:
    """The name of layer.activation in ACTIVATIONS, as a Keras config holds it ("linear" for
    None); any other callable cannot go in a config (TypeError)."""
    for key, function in ACTIVATIONS.items():
        if layer.activation is function:
            return key
    raise TypeError(
        f"{type(layer).__name__}.get_config: argument 'activation': cannot serialize {layer.activation!r}; "
        f"a config can hold only one of minigrad's activations, by name: {', '.join(ACTIVATIONS)}"
    )


class Dense(Module):
    """A fully connected layer, as keras.layers.Dense: y = activation(x @ kernel + bias).

    The input's last axis has in_features values; it is read from the first input, so
    Dense(10) needs no input size. The paper drops the bias of a layer followed by
    BatchNorm (beta takes its role): use_bias=False does that.

    Args:
        units: the number of outputs (the size of y's last axis), a positive int.
        activation: applied to x @ kernel + bias: "relu", "sigmoid", "linear" or None (no
            activation), or any callable on a Tensor. Default None.
        use_bias: whether to add a bias. Default True.
        kernel_initializer: how the kernel's values are drawn: a name from
            minigrad.nn.initializers, an initializer, its config dict, or a callable(shape,
            dtype). Default "glorot_uniform".
        bias_initializer: the same for the bias. Default "zeros".
        kernel_regularizer: a penalty on the kernel that regularization_loss() adds up: a
            name ("l2"), a callable or None. Default None.
        bias_regularizer: the same for the bias. Default None.
        kernel_constraint: applied to the kernel after each optimizer step: a name
            ("non_neg", "unit_norm"), a callable or None. Default None.
        bias_constraint: the same for the bias. Default None.
        dtype: the weights' float dtype (a Module argument). Default "float32".
        trainable: False freezes the layer (a Module argument). Default True.

    Input shape:
        (..., in_features): any number of leading axes, usually (batch_size, in_features).

    Output shape:
        (..., units).

    Weights, created on the first call (or by build(input_shape)):
        kernel: shape (in_features, units), trainable.
        bias: shape (units,), trainable; only with use_bias=True, else bias is None.

    Example:

        >>> import minigrad as mg
        >>> layer = mg.nn.Dense(4, activation="relu")
        >>> y = layer(mg.ones((2, 3)))
        >>> y.shape
        (2, 4)
        >>> layer.kernel.shape, layer.bias.shape
        ((3, 4), (4,))
        >>> bool((y.numpy() >= 0).all())
        True
    """

    def __init__(
        self,
        units: int,
        activation: str | Callable[[Tensor], Tensor] | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        activation = resolve_activation("Dense", activation)
        self.units = units
        self.activation = activation
        self.use_bias = use_bias
        resolve_weight_options(self, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                               kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                               kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        self.kernel: Tensor | None = None
        self.bias: Tensor | None = None
        self.in_features: int | None = None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise ValueError(f"Dense: cannot build for input shape {input_shape}; the last axis must be known")
        self.in_features = int(input_shape[-1])
        self.add_weight("kernel", (self.in_features, self.units), self.kernel_initializer,
                        regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape[:-1]) + (self.units,)

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Dense(units={self.units}) was built for inputs with {self.in_features} "
                f"features on the last axis, but got input shape {x.shape}"
            )
        y = F.dense(x, self.kernel, self.bias)
        return y if self.activation is None else self.activation(y)

    def config_value(self, name: str) -> Any:
        """As Module's, but the activation by its name, as Keras ("linear" for None)."""
        return activation_name(self) if name == "activation" else super().config_value(name)

    def extra_repr(self) -> str:
        return f"units={self.units}, in_features={self.in_features}, use_bias={self.use_bias}"


class ReLU(Module):
    """max(x, 0), elementwise. No weights."""

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        return F.relu(x)


class Sigmoid(Module):
    """1 / (1 + e^-x), elementwise: the paper's MNIST nonlinearity. No weights."""

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        return F.sigmoid(x)


class Sequential(Module):
    """Layers applied one after another: Sequential(Dense(64), BatchNorm(), ReLU(), Dense(10)).

    A `training` argument given to the call is passed to every layer; left as None, each
    layer follows its own mode (which train() and eval() set for all of them).

    get_config() holds each layer's as {"module": "minigrad.nn", "class_name": "Dense",
    "config": {...}, "registered_name": None} under "layers", as Keras's Sequential does.
    """

    def __init__(self, *layers: Module, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])  # Sequential([a, b]) as in Keras
        self.layers: list[Module] = []
        for layer in layers:
            self.add(layer)

    def add(self, layer: Module) -> None:
        """Append a layer."""
        if not isinstance(layer, Module):
            raise TypeError(f"Sequential: expected a Module, got {type(layer).__name__} {layer!r:.60}")
        setattr(self, str(len(self.layers)), layer)  # named "0", "1", ... in the state
        self.layers.append(layer)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        shape = tuple(input_shape)
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            shape = layer.compute_output_shape(shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.compute_output_shape(shape)
        return shape

    def forward(self, x: Tensor, training: bool | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        """{"layers": [each layer's class name and config], "dtype": ..., "trainable": ...}; a
        layer that is not one of minigrad.nn's is a TypeError (from_config could not find it)."""
        layers = []
        for index, layer in enumerate(self.layers):
            try:
                layers.append(configs.serialize_layer(layer))
            except TypeError as error:
                raise TypeError(f"Sequential.get_config: layer {index}: {error}") from None
        own = {name: self.config_value(name) for name in configs.constructor_arguments(Module, Module)}
        return {"layers": layers, **own}

    @classmethod
    def from_config(cls, config: Any) -> Sequential:
        """A new Sequential from get_config()'s dict, each layer rebuilt by its class name
        (minigrad.nn's layers only); a bad entry is an error naming its index. Another key
        the constructor does not take is the TypeError of a misspelt keyword."""
        if not isinstance(config, dict) or not isinstance(config.get("layers", []), list):
            raise ValueError(f"Sequential.from_config: expected a dict with a list under 'layers', "
                             f"got {config!r:.80}")
        layers = []
        for index, entry in enumerate(config.get("layers", [])):
            try:
                layers.append(configs.deserialize_layer(entry))
            except (TypeError, ValueError) as error:
                raise type(error)(f"Sequential.from_config: layer {index}: {error}") from None
        return cls(layers, **{name: value for name, value in config.items() if name != "layers"})

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

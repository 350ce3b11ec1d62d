"""The paper's MNIST network and an SGD training loop, shared by lessons 7 to 11.

    model = paper_mlp("sigmoid", batch_norm=True)
    history = fit(model, mg.data.load_digits(), learning_rate=0.5, steps=1000)
    history.steps_to(0.95)

Accuracy is always measured in inference mode (training=False), so a BatchNorm model is
judged with its moving statistics, as it would be when deployed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from minigrad import random
from minigrad.autograd import no_grad
from minigrad.backend import get_backend, to_backend, to_numpy
from minigrad.data import Batches
from minigrad.nn import functional as F
from minigrad.nn.batchnorm import BatchNorm
from minigrad.nn.initializers import RandomNormal
from minigrad.nn.layers import Dense, ReLU, Sequential, Sigmoid
from minigrad.nn.module import Module
from minigrad.optim import SGD, check_options
from minigrad.runlog import RunLog
from minigrad.tensor import Tensor

ACTIVATION_LAYERS = {"relu": ReLU, "sigmoid": Sigmoid}


def paper_mlp(activation: str = "sigmoid", batch_norm: bool = False, *, hidden: tuple[int, ...] = (100, 100, 100),
              classes: int = 10, bn_momentum: float = 0.9, kernel_initializer: Any = None,
              bn_options: dict | None = None, dtype: Any = "float32") -> Sequential:
    """The paper's MNIST network: Dense -> [BatchNorm] -> activation per hidden layer, then logits.

    Each hidden layer computes activation(BN(x @ kernel)) with BatchNorm, or
    activation(x @ kernel + bias) without; the last is logits = x @ kernel + bias. As in the
    paper, BatchNorm goes between each hidden Dense and its nonlinearity, and that Dense has
    no bias, because BatchNorm's beta plays its role.

    Args:
        activation: the hidden nonlinearity, "sigmoid" (the paper's) or "relu".
            Default "sigmoid".
        batch_norm: True puts a BatchNorm after each hidden Dense. Default False.
        hidden: the units of each hidden layer. Default (100, 100, 100), the paper's.
        classes: the units of the output layer, one logit per class. Default 10.
        bn_momentum: each BatchNorm's momentum (the weight of the old moving average).
            Default 0.9.
        kernel_initializer: the initializer of every kernel. Default None: small Gaussians,
            RandomNormal(stddev=0.05), Keras's random_normal.
        bn_options: more keyword arguments for each BatchNorm, e.g. dict(renorm=True,
            renorm_clipping={"rmax": 3, "dmax": 5}) for Batch Renormalization (lesson 11).
            Give the momentum as bn_momentum, not here. Default None: none.
        dtype: the float type of every layer's weights, e.g. "float64" (lesson 12, where
            rounding must stay rounding over 1,500 steps). Default "float32".

    Returns:
        An unbuilt Sequential: its weights are created on its first call (or by fit()), a
        kernel of shape (inputs, units) per Dense, a bias of shape (units,) where there is no
        BatchNorm, and gamma, beta, moving_mean and moving_variance of shape (units,) per
        BatchNorm.

    Example:

        >>> from minigrad.training import paper_mlp
        >>> model = paper_mlp("relu", batch_norm=True, hidden=(16, 16), classes=3)
        >>> [type(layer).__name__ for layer in model]
        ['Dense', 'BatchNorm', 'ReLU', 'Dense', 'BatchNorm', 'ReLU', 'Dense']
        >>> model.build((None, 64))
        >>> model[0].kernel.shape, model[-1].kernel.shape, model[-1].bias.shape
        ((64, 16), (16, 3), (3,))
        >>> renorm = paper_mlp("relu", batch_norm=True, bn_options=dict(renorm=True, renorm_momentum=0.9))
        >>> renorm[1].renorm, renorm[1].renorm_momentum, renorm[1].momentum
        (True, 0.9, 0.9)
        >>> paper_mlp("relu", batch_norm=True, dtype="float64")[1].dtype
        dtype('float64')
    """
    if activation not in ACTIVATION_LAYERS:
        raise ValueError(f"paper_mlp: activation must be one of {sorted(ACTIVATION_LAYERS)}, got {activation!r}")
    bn_options = dict(bn_options or {})
    if "momentum" in bn_options:
        raise ValueError("paper_mlp: give BatchNorm's momentum as bn_momentum, not in bn_options")
    if "dtype" in bn_options:
        raise ValueError("paper_mlp: give the dtype as paper_mlp's dtype (every layer's), not in bn_options")
    if bn_options and not batch_norm:
        raise ValueError("paper_mlp: bn_options configure the BatchNorm layers, so they need batch_norm=True")
    initializer = RandomNormal(stddev=0.05) if kernel_initializer is None else kernel_initializer
    model = Sequential()
    for units in hidden:
        model.add(Dense(units, use_bias=not batch_norm, kernel_initializer=initializer, dtype=dtype))
        if batch_norm:
            model.add(BatchNorm(momentum=bn_momentum, **bn_options, dtype=dtype))
        model.add(ACTIVATION_LAYERS[activation]())
    model.add(Dense(classes, kernel_initializer=initializer, dtype=dtype))
    return model


class ClassBatches:
    """Non-i.i.d. mini-batches: each batch holds batch_size / classes_per_batch samples of each
    of `classes_per_batch` classes, chosen at random per batch (lesson 11).

    Iterate once per epoch, as Batches: an epoch has len(x) // batch_size batches. Within a
    class the samples come in a shuffled order that starts again once all have been used, so
    within a class every sample is seen about equally often (and each class about equally
    often: balanced data gives balanced epochs). Seeded once with `seed`, so a run reproduces.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, classes_per_batch: int = 2,
                 seed: int = 0) -> None:
        if len(x) != len(y):
            raise ValueError(f"ClassBatches: x has {len(x)} samples but y has {len(y)}")
        self.labels = np.unique(y)
        for name, value in (("batch_size", batch_size), ("classes_per_batch", classes_per_batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ClassBatches: {name} must be a positive int, got {value!r}")
        if classes_per_batch > len(self.labels) or batch_size % classes_per_batch or batch_size > len(x):
            raise ValueError(
                f"ClassBatches: batch_size {batch_size} must be a multiple of classes_per_batch "
                f"{classes_per_batch}, which must be at most the {len(self.labels)} classes, and the "
                f"batch at most the {len(x)} samples"
            )
        self.x, self.y, self.batch_size, self.classes_per_batch = x, y, batch_size, classes_per_batch
        self.rng = np.random.default_rng(seed)
        self.members = [np.flatnonzero(y == label) for label in self.labels]
        self.queues: list[list[int]] = [[] for _ in self.labels]

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def _take(self, k: int, count: int) -> list[int]:
        taken: list[int] = []
        while len(taken) < count:
            if not self.queues[k]:
                self.queues[k] = list(self.rng.permutation(self.members[k]))
            taken.append(self.queues[k].pop())
        return taken

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        per_class = self.batch_size // self.classes_per_batch
        for _ in range(len(self)):
            classes = self.rng.choice(len(self.labels), size=self.classes_per_batch, replace=False)
            chosen = np.concatenate([self._take(int(k), per_class) for k in classes])
            yield self.x[chosen], self.y[chosen]


def accuracy(model: Module, x: Any, y: Any) -> float:
    """The fraction of samples whose largest logit is the label, in inference mode."""
    with no_grad():
        logits = model(_as_tensor(x), training=False)
    return float((to_numpy(logits.data).argmax(axis=-1) == to_numpy(y)).mean())


@dataclass
class History:
    """What fit() measured: one entry per evaluation, and whether the loss blew up."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    diverged: bool = False
    seconds: float = 0.0

    def steps_to(self, target: float) -> int | None:
        """The first evaluated step whose test accuracy reaches `target`, or None if none did."""
        return next((s for s, a in zip(self.step, self.test_accuracy) if a >= target), None)

    @property
    def final_accuracy(self) -> float:
        """The last measured test accuracy (0.1-ish chance level if the run diverged)."""
        return self.test_accuracy[-1] if self.test_accuracy else float("nan")


def fit(model: Module, data: tuple, *, learning_rate: float | None = None, steps: int, batch_size: int = 60,
        seed: int = 0, eval_every: int = 20, log_path: str | os.PathLike | None = None,
        on_evaluate: Callable[[int, History], None] | None = None, momentum: float = 0.0,
        nesterov: bool = False, weight_decay: float = 0.0, lr: float | None = None,
        classes_per_batch: int | None = None) -> History:
    """Train `model` with SGD on softmax cross-entropy for `steps` mini-batches.

    Each step draws a mini-batch (x, y), computes loss = softmax_cross_entropy(model(x), y)
    in training mode, and takes one SGD step on every trainable weight (see
    minigrad.optim.SGD for the update formula). Accuracy is measured in inference mode.

    Args:
        model: the network, e.g. paper_mlp(). An unbuilt model is built with weights drawn
            from mg.random seeded with `seed`; a built one goes on from its weights.
        data: (x_train, y_train, x_test, y_test) as NumPy arrays: inputs of shape (N, ...)
            and integer labels of shape (N,). They are moved once to the current backend.
        learning_rate: SGD's step size, a number >= 0. Required (or give it as lr).
        steps: how many mini-batches to train on, a positive int. Required.
        batch_size: samples per mini-batch. Default 60.
        seed: seeds the weights of an unbuilt model and the batch order, so a run
            reproduces. Default 0.
        eval_every: record loss and accuracy every this many steps (and at step 0 and after
            the last step). Default 20.
        log_path: a run-log CSV to write each record to (see minigrad.runlog). Default None:
            no file.
        on_evaluate: called as on_evaluate(step, history) after each record. Default None.
        momentum: SGD's momentum, in [0, 1]. Default 0.0: plain SGD.
        nesterov: SGD's Nesterov momentum (needs momentum > 0). Default False.
        weight_decay: SGD's L2 weight decay, >= 0. Default 0.0.
        lr: PyTorch's name for learning_rate, accepted too; give one of the two.
        classes_per_batch: None draws i.i.d. shuffled batches (Batches). A number k draws
            non-i.i.d. ones: each batch holds batch_size / k samples of each of k classes
            chosen at random (ClassBatches). Default None.

    Returns:
        A History: per record, the step, the mean training loss since the last record (nan
        at step 0), and accuracy on a slice of the training set (as large as the test set)
        and on the test set; `diverged` is True if a non-finite loss stopped the run. The
        model is trained in place.

    Example:

        >>> import numpy as np
        >>> from minigrad.training import fit, paper_mlp
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(400, 4)).astype(np.float32)
        >>> y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
        >>> data = (x[:300], y[:300], x[300:], y[300:])
        >>> model = paper_mlp("relu", batch_norm=True, hidden=(16,), classes=2)
        >>> history = fit(model, data, learning_rate=0.1, momentum=0.9, steps=100, eval_every=50)
        >>> history.step
        [0, 50, 100]
        >>> history.final_accuracy > 0.9
        True
    """
    learning_rate = check_options("fit", learning_rate, lr, momentum, nesterov, weight_decay)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"fit: steps must be a positive int, got {steps!r}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"fit: eval_every must be a positive int, got {eval_every!r}")
    x_train, y_train, x_test, y_test = data
    if classes_per_batch is None:
        batches: Any = Batches(x_train, y_train, batch_size, shuffle=True, seed=seed)
    else:
        batches = ClassBatches(x_train, y_train, batch_size, classes_per_batch, seed=seed)
    backend = get_backend()
    # Accuracy on the whole training set each time would cost more than training; a fixed
    # slice of the same size as the test set shows the train/test gap just as well.
    probe = slice(0, len(x_test))
    x_probe, y_probe = _as_tensor(x_train[probe]), y_train[probe]
    x_test_t = _as_tensor(x_test)

    random.manual_seed(seed)  # only now, once every argument has been checked
    if not model.built:  # a built model (trained before, or loaded) goes on from its weights
        model.build((None,) + tuple(x_train.shape[1:]))
    optimizer = SGD(model.parameters(), learning_rate, momentum, nesterov, weight_decay)
    history = History()
    log = RunLog(log_path) if log_path is not None else None
    started = time.perf_counter()
    losses: list[float] = []

    def evaluate(step: int) -> None:
        history.step.append(step)
        history.loss.append(float(np.mean(losses)) if losses else float("nan"))
        history.train_accuracy.append(accuracy(model, x_probe, y_probe))
        history.test_accuracy.append(accuracy(model, x_test_t, y_test))
        losses.clear()
        if log is not None:
            log.log(step, history.loss[-1], history.train_accuracy[-1], history.test_accuracy[-1], learning_rate)
        if on_evaluate is not None:
            on_evaluate(step, history)

    try:
        evaluate(0)
        step = 0
        while step < steps:
            for x, y in batches:
                loss = F.softmax_cross_entropy(model(Tensor(x), training=True), to_backend(y, backend))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                losses.append(loss.item())
                if not math.isfinite(losses[-1]):
                    history.diverged = True
                    evaluate(step)
                    return history
                if step % eval_every == 0 or step == steps:
                    evaluate(step)
                if step == steps:
                    break
    finally:
        history.seconds = time.perf_counter() - started
        if log is not None:
            log.close()
    return history


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)  # a new Tensor lives on the current backend

"""minigrad.training: the paper's MLP and the SGD loop the lessons share."""

import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.data import Batches
from minigrad.nn import functional as F
from minigrad.nn.batchnorm import BatchNorm
from minigrad.nn.layers import Dense, ReLU, Sigmoid
from minigrad.runlog import read_run
from minigrad.training import History, accuracy, fit, paper_mlp


def blobs(n=240, seed=0):
    """Two well separated Gaussian classes in 4-D, split in half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = (rng.normal(size=(n, 4)) + 3.0 * y[:, None]).astype(np.float32)
    return x[: n // 2], y[: n // 2], x[n // 2:], y[n // 2:]


def test_paper_mlp_layout():
    model = paper_mlp("sigmoid", batch_norm=True, bn_momentum=0.8)
    kinds = [type(layer) for layer in model]
    assert kinds == [Dense, BatchNorm, Sigmoid] * 3 + [Dense]
    assert [layer.units for layer in model if isinstance(layer, Dense)] == [100, 100, 100, 10]
    assert not any(layer.use_bias for layer in list(model)[:-1] if isinstance(layer, Dense))
    assert all(layer.momentum == 0.8 for layer in model if isinstance(layer, BatchNorm))
    plain = paper_mlp("relu")
    assert [type(layer) for layer in plain] == [Dense, ReLU] * 3 + [Dense]
    assert all(layer.use_bias for layer in plain if isinstance(layer, Dense))


def test_paper_mlp_default_init_is_the_papers_small_gaussian():
    mg.random.manual_seed(0)
    model = paper_mlp("relu")
    model.build((None, 64))
    std = model[0].kernel.numpy().std()
    assert 0.045 < std < 0.055, std


def test_paper_mlp_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="'tanh'"):
        paper_mlp("tanh")


def test_fit_learns_and_logs(tmp_path):
    data = blobs()
    path = tmp_path / "run.csv"
    model = paper_mlp("relu", batch_norm=True, hidden=(16,), classes=2)
    history = fit(model, data, learning_rate=0.1, steps=30, batch_size=20, eval_every=10, log_path=path)
    assert history.step == [0, 10, 20, 30]
    assert history.final_accuracy > 0.9
    assert history.steps_to(0.9) in (10, 20, 30)
    assert history.steps_to(1.01) is None
    assert not history.diverged
    assert math.isnan(history.loss[0]) and all(loss > 0 for loss in history.loss[1:])
    logged = read_run(path)
    assert logged["step"] == [0.0, 10.0, 20.0, 30.0]
    np.testing.assert_allclose(logged["test_accuracy"], history.test_accuracy, rtol=1e-5)
    assert logged["learning_rate"] == [0.1] * 4


def test_fit_reproduces_with_the_same_seed_and_differs_with_another():
    data = blobs()

    def run(seed):
        return fit(paper_mlp("relu", hidden=(8,), classes=2), data, learning_rate=0.05, steps=12,
                   batch_size=20, eval_every=4, seed=seed).loss

    np.testing.assert_array_equal(run(3), run(3))  # the first entry is NaN: no steps yet
    assert run(3)[1:] != run(4)[1:]


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_fit_stops_and_flags_a_diverging_run():
    data = blobs()
    model = paper_mlp("relu", hidden=(8,), classes=2, kernel_initializer="glorot_uniform")
    history = fit(model, data, learning_rate=1e30, steps=50, batch_size=20, eval_every=10)
    assert history.diverged
    assert history.step[-1] < 50
    assert not math.isfinite(history.loss[-1])


def test_accuracy_uses_inference_mode():
    x_train, y_train, _, _ = blobs()
    model = paper_mlp("relu", batch_norm=True, hidden=(8,), classes=2)
    model.build((None, 4))
    before = [layer.moving_mean.numpy().copy() for layer in model if isinstance(layer, BatchNorm)]
    value = accuracy(model, x_train, y_train)
    after = [layer.moving_mean.numpy() for layer in model if isinstance(layer, BatchNorm)]
    assert 0.0 <= value <= 1.0
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)  # training mode would have moved them


@pytest.mark.parametrize("name, value", [("steps", 0), ("steps", 2.5), ("eval_every", 0), ("eval_every", True)])
def test_fit_rejects_bad_counts(name, value):
    arguments = dict(learning_rate=0.1, steps=5, eval_every=1)
    arguments[name] = value
    with pytest.raises(ValueError, match=f"{name} must be a positive int, got {value!r}"):
        fit(paper_mlp("relu", hidden=(4,), classes=2), blobs(), **arguments)


def test_history_without_evaluations():
    assert math.isnan(History().final_accuracy)
    assert History().steps_to(0.5) is None


def test_fit_always_evaluates_after_the_last_step():
    history = fit(paper_mlp("relu", hidden=(4,), classes=2), blobs(), learning_rate=0.1, steps=25,
                  batch_size=20, eval_every=10)
    assert history.step == [0, 10, 20, 25]


def test_fit_continues_from_a_built_model():
    data = blobs()
    model = paper_mlp("relu", hidden=(8,), classes=2)
    first = fit(model, data, learning_rate=0.1, steps=20, batch_size=20, eval_every=20)
    second = fit(model, data, learning_rate=0.1, steps=20, batch_size=20, eval_every=20)
    assert second.test_accuracy[0] == first.test_accuracy[-1]  # it starts where the first run ended


# ---- the optimizer's options, and learning_rate or lr ----------------------------------------

def small_model():
    return paper_mlp("relu", batch_norm=True, hidden=(8,), classes=2)


def trained_by_hand(data, steps, batch_size, seed, **options):
    """fit()'s loop written out with SGD: the same seeds, batches and update."""
    x_train, y_train, _, _ = data
    mg.manual_seed(seed)
    model = small_model()
    model.build((None, x_train.shape[1]))
    optimizer = mg.optim.SGD(model.parameters(), **options)
    batches = Batches(x_train, y_train, batch_size, shuffle=True, seed=seed)
    step = 0
    while step < steps:
        for x, y in batches:
            loss = F.softmax_cross_entropy(model(mg.Tensor(x), training=True), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    return model.state_dict()


@pytest.mark.parametrize("options", [
    dict(momentum=0.9), dict(momentum=0.5, nesterov=True), dict(weight_decay=0.01), dict(),
])
def test_fit_passes_the_optimizers_options_to_sgd(options):
    data = blobs()
    model = small_model()
    fit(model, data, learning_rate=0.1, steps=15, batch_size=20, eval_every=5, seed=2, **options)
    expected = trained_by_hand(data, 15, 20, seed=2, learning_rate=0.1, **options)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def test_fit_with_momentum_trains_differently_from_plain_sgd():
    data = blobs()
    runs = {}
    for momentum in (0.0, 0.9):
        model = small_model()
        fit(model, data, learning_rate=0.1, momentum=momentum, steps=10, batch_size=20, eval_every=10)
        runs[momentum] = model.state_dict()["0.kernel"]
    assert not np.allclose(runs[0.0], runs[0.9])


def test_fit_takes_lr_as_another_name_for_learning_rate(tmp_path):
    data = blobs()
    by_name, by_alias = small_model(), small_model()
    fit(by_name, data, learning_rate=0.1, steps=5, batch_size=20, eval_every=5)
    fit(by_alias, data, lr=0.1, steps=5, batch_size=20, eval_every=5, log_path=tmp_path / "run.csv")
    for name, value in by_name.state_dict().items():
        np.testing.assert_array_equal(value, by_alias.state_dict()[name])
    assert read_run(tmp_path / "run.csv")["learning_rate"] == [0.1, 0.1]


@pytest.mark.parametrize("options, error, message", [
    (dict(), TypeError, "fit: missing the learning rate; pass learning_rate="),
    (dict(learning_rate=0.1, lr=0.1), TypeError, "fit: got both learning_rate=0.1 and lr=0.1"),
    (dict(lr=-1.0), ValueError, "fit: lr must be a number in \\[0, inf\\], got -1.0"),
    (dict(learning_rate=0.1, momentum=1.5), ValueError, "fit: momentum must be a number in \\[0, 1\\], got 1.5"),
    (dict(learning_rate=0.1, weight_decay=-1), ValueError, "fit: weight_decay must be a number"),
    (dict(learning_rate=0.1, nesterov=True), ValueError, "fit: nesterov=True needs momentum > 0"),
    (dict(learning_rate=0.1, batch_size=0), ValueError, "batch_size must be a positive int, got 0"),
])
def test_bad_options_are_named_and_touch_neither_the_model_nor_the_seed(tmp_path, options, error, message):
    model = small_model()
    mg.manual_seed(7)
    expected = mg.randn(3).numpy()
    mg.manual_seed(7)
    with pytest.raises(error, match=message):
        fit(model, blobs(), steps=5, log_path=tmp_path / "run.csv", **options)
    assert not model.built
    np.testing.assert_array_equal(mg.randn(3).numpy(), expected)  # fit did not reseed
    assert not (tmp_path / "run.csv").exists()


# ---- lesson 11: BatchNorm's options, and non-i.i.d. batches ---------------------------------

def test_paper_mlp_passes_bn_options_to_each_batchnorm():
    clipping = {"rmax": 3, "dmax": 5}
    model = paper_mlp("relu", batch_norm=True, bn_momentum=0.95,
                      bn_options=dict(renorm=True, renorm_clipping=clipping, renorm_momentum=0.9))
    layers = [layer for layer in model if isinstance(layer, BatchNorm)]
    assert len(layers) == 3
    for layer in layers:
        assert layer.renorm and layer.renorm_clipping == clipping and layer.renorm_momentum == 0.9
        assert layer.momentum == 0.95
    assert layers[0].renorm_clipping is not layers[1].renorm_clipping  # each layer holds its own
    assert not paper_mlp("relu", batch_norm=True)[1].renorm  # unchanged without bn_options


@pytest.mark.parametrize("arguments, message", [
    (dict(batch_norm=True, bn_options=dict(momentum=0.5)), "give BatchNorm's momentum as bn_momentum"),
    (dict(batch_norm=False, bn_options=dict(renorm=True)), "bn_options .* need batch_norm=True"),
])
def test_paper_mlp_refuses_misplaced_bn_options(arguments, message):
    with pytest.raises(ValueError, match=message):
        paper_mlp("relu", **arguments)


def ten_classes(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), n // 10)
    return rng.normal(size=(n, 3)).astype(np.float32) + y[:, None], y


@pytest.mark.parametrize("batch_size, k", [(8, 2), (2, 2), (6, 3), (10, 1)])
def test_class_batches_draw_each_batch_from_k_classes_equally(batch_size, k):
    from minigrad.training import ClassBatches

    x, y = ten_classes()
    batches = ClassBatches(x, y, batch_size, classes_per_batch=k, seed=1)
    assert len(batches) == len(x) // batch_size
    seen = np.zeros(len(x), dtype=int)
    for _ in range(4):  # epochs
        drawn = list(batches)
        assert len(drawn) == len(batches)
        for xb, yb in drawn:
            labels, counts = np.unique(yb, return_counts=True)
            assert len(labels) == k and (counts == batch_size // k).all()
            rows = [int(np.flatnonzero((x == row).all(axis=1))[0]) for row in xb]
            assert (y[rows] == yb).all()  # x and y stay paired
            seen[rows] += 1
    assert seen.min() >= 1, "within a class every sample is used before any repeats"


def test_class_batches_reproduce_with_a_seed_and_differ_with_another():
    from minigrad.training import ClassBatches

    x, y = ten_classes()

    def labels(seed):
        return [tuple(yb) for _, yb in ClassBatches(x, y, 4, 2, seed=seed)]

    assert labels(3) == labels(3) and labels(3) != labels(4)


@pytest.mark.parametrize("batch_size, k", [(5, 2), (4, 11), (0, 1), (4, 0), (400, 2)])
def test_class_batches_refuse_sizes_that_cannot_be_split(batch_size, k):
    from minigrad.training import ClassBatches

    with pytest.raises(ValueError, match="ClassBatches"):
        ClassBatches(*ten_classes(), batch_size, k)


def test_fit_with_classes_per_batch_trains_on_class_batches():
    from minigrad.training import ClassBatches

    x, y = ten_classes()
    data = (x, y, x[:50], y[:50])
    model = paper_mlp("relu", batch_norm=True, hidden=(8,), classes=10)
    fit(model, data, learning_rate=0.1, steps=12, batch_size=4, classes_per_batch=2, seed=2, eval_every=6)
    mg.manual_seed(2)  # the same run written out
    expected = paper_mlp("relu", batch_norm=True, hidden=(8,), classes=10)
    expected.build((None, 3))
    optimizer = mg.optim.SGD(expected.parameters(), learning_rate=0.1)
    for step, (xb, yb) in zip(range(12), ClassBatches(x, y, 4, 2, seed=2)):
        loss = F.softmax_cross_entropy(expected(mg.Tensor(xb), training=True), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, expected.state_dict()[name], err_msg=name)
    shuffled = paper_mlp("relu", batch_norm=True, hidden=(8,), classes=10)
    fit(shuffled, data, learning_rate=0.1, steps=12, batch_size=4, seed=2, eval_every=6)
    assert not np.array_equal(shuffled.state_dict()["0.kernel"], model.state_dict()["0.kernel"])

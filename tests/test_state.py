"""Saved state: bit-for-bit round trips, clear errors that leave the model alone, atomic writes,
no unpickling, and moving between backends."""

import os
import pickle
import zipfile

import numpy as np
import pytest

import minigrad as mg
from conftest import normal
from minigrad.nn import state


def trained_model(seed=0):
    """A small model whose every weight, moving statistic and counter has moved off its start."""
    mg.manual_seed(seed)
    model = mg.nn.Sequential(mg.nn.Dense(4, use_bias=False), mg.nn.BatchNorm(momentum=0.7),
                             mg.nn.ReLU(), mg.nn.Dense(3))
    x = mg.Tensor(normal((8, 5), seed).astype(np.float32))
    labels = np.arange(8) % 3
    model.build(x.shape)
    optimizer = mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        mg.nn.functional.softmax_cross_entropy(model(x), labels).backward()
        optimizer.step()
    return model, x


def assert_states_equal(a, b):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_save_then_load_restores_every_value_bit_for_bit(tmp_path):
    model, x = trained_model()
    path = tmp_path / "model.npz"
    model.save_weights(path)
    fresh, _ = trained_model(seed=1)  # same architecture, different values everywhere
    assert not np.array_equal(fresh.state_dict()["1.moving_mean"], model.state_dict()["1.moving_mean"])
    fresh.load_weights(path)
    assert_states_equal(fresh.state_dict(), model.state_dict())
    model.eval()
    fresh.eval()
    assert np.array_equal(fresh(x).numpy(), model(x).numpy())  # identical inference output
    assert fresh.state_dict()["1.num_batches_tracked"] == 3


def test_loading_writes_in_place_so_an_optimizer_keeps_its_parameters(tmp_path):
    model, _ = trained_model()
    params = model.parameters()
    model.save_weights(tmp_path / "w.npz")
    model.load_weights(tmp_path / "w.npz")
    assert all(a is b for a, b in zip(params, model.parameters()))


def corrupt_variants(tmp_path, good):
    """(description, path, expected error type, message pattern) for each broken file."""
    values = dict(np.load(good))
    cases = []
    missing = dict(values)
    del missing["1.moving_variance"]
    np.savez(tmp_path / "missing.npz", **missing)
    cases.append(("missing key", tmp_path / "missing.npz", KeyError, "missing weight.*1.moving_variance"))
    shaped = dict(values, **{"3.kernel": np.zeros((5, 3), np.float32)})
    np.savez(tmp_path / "shape.npz", **shaped)
    cases.append(("wrong shape", tmp_path / "shape.npz", ValueError, "'3.kernel' has shape \\(5, 3\\), expected \\(4, 3\\)"))
    extra = dict(values, **{"9.kernel": np.zeros(2, np.float32)})
    np.savez(tmp_path / "extra.npz", **extra)
    cases.append(("unexpected key", tmp_path / "extra.npz", KeyError, "unexpected weight.*9.kernel"))
    typed = dict(values, **{"1.num_batches_tracked": np.array(2.5)})
    np.savez(tmp_path / "dtype.npz", **typed)
    cases.append(("float into int", tmp_path / "dtype.npz", ValueError, "num_batches_tracked.*float64.*int64"))
    data = good.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    cases.append(("truncated", tmp_path / "truncated.npz", OSError, "truncated.npz.*not a readable .npz"))
    (tmp_path / "garbage.npz").write_bytes(b"this is not a zip file at all")
    cases.append(("garbage", tmp_path / "garbage.npz", OSError, "garbage.npz.*not a readable .npz"))
    np.save(tmp_path / "single.npy", np.zeros(3))
    cases.append(("one array", tmp_path / "single.npy", OSError, "single.npy.*not named weights"))
    cases.append(("no file", tmp_path / "absent.npz", OSError, "no weights file at .*absent.npz"))
    return cases


def test_bad_files_raise_clear_errors_and_leave_the_model_as_it_was(tmp_path):
    model, _ = trained_model()
    good = tmp_path / "good.npz"
    model.save_weights(good)
    target, _ = trained_model(seed=2)
    before = target.state_dict()
    for description, path, error, message in corrupt_variants(tmp_path, good):
        with pytest.raises(error, match=message):
            target.load_weights(path)
        assert_states_equal(target.state_dict(), before)


def test_the_file_name_is_in_the_key_errors(tmp_path):
    model, _ = trained_model()
    np.savez(tmp_path / "partial.npz", **{"0.kernel": model.state_dict()["0.kernel"]})
    with pytest.raises(KeyError, match="partial.npz"):
        model.load_weights(tmp_path / "partial.npz")


def test_loading_never_unpickles(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("0.kernel.npy", "w") as member:
            np.lib.format.write_array(member, np.array([Boom()], dtype=object), allow_pickle=True)
    model, _ = trained_model()
    with pytest.raises(OSError, match="evil.npz"):
        model.load_weights(path)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(OSError):  # a plain pickle is refused too
        (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Boom()))
        model.load_weights(tmp_path / "evil.pkl")
    assert not (tmp_path / "pwned").exists()


def test_a_crash_in_the_middle_of_a_save_never_leaves_a_truncated_file(tmp_path, monkeypatch):
    model, _ = trained_model()
    path = tmp_path / "model.npz"
    model.save_weights(path)
    saved = path.read_bytes()

    def crash_halfway(member, array, **options):
        member.write(b"\x93NUMPY half an array")  # what a partial write would leave behind
        raise KeyboardInterrupt("killed in the middle of the save")

    other, _ = trained_model(seed=3)
    monkeypatch.setattr(state.npy, "write_array", crash_halfway)
    with pytest.raises(KeyboardInterrupt):
        other.save_weights(path)
    assert path.read_bytes() == saved  # the old file, whole
    assert os.listdir(tmp_path) == ["model.npz"]  # and no temporary left behind
    with pytest.raises(KeyboardInterrupt):
        other.save_weights(tmp_path / "new.npz")
    assert not (tmp_path / "new.npz").exists()


def test_loading_into_an_unbuilt_model_says_to_build_it(tmp_path):
    model, _ = trained_model()
    model.save_weights(tmp_path / "w.npz")
    fresh = mg.nn.Sequential(mg.nn.Dense(4, use_bias=False), mg.nn.BatchNorm(), mg.nn.ReLU(), mg.nn.Dense(3))
    with pytest.raises(ValueError, match="not built.*build\\(input_shape\\)"):
        fresh.load_weights(tmp_path / "w.npz")
    fresh.build((None, 5))
    fresh.load_weights(tmp_path / "w.npz")
    assert_states_equal(fresh.state_dict(), model.state_dict())


def test_load_state_dict_accepts_tensors_and_casts_float64():
    model, _ = trained_model()
    values = {name: mg.Tensor(value) if value.dtype.kind == "f" else value
              for name, value in model.state_dict().items()}
    values["3.bias"] = np.array([1.0, 2.0, 3.0])  # float64 into a float32 weight, as PyTorch allows
    model.load_state_dict(values)
    assert model[3].bias.dtype == np.float32
    np.testing.assert_array_equal(model[3].bias.numpy(), [1.0, 2.0, 3.0])


def test_to_moves_every_weight_in_place(backend):
    model, x = trained_model()
    params = model.parameters()
    expected = model.state_dict()
    assert model.to(backend) is model
    assert all(w.backend == backend for _, w in model.named_weights())
    assert all(a is b for a, b in zip(params, model.parameters()))
    assert_states_equal(model.state_dict(), expected)
    model.eval()
    y = model(x.to(backend))
    assert y.backend == backend
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        model.to("tpu")

"""Saved state under hostile files: bounded memory, validated values, any weight name, the
file mode a plain open() gives, errors that name the target, no temporary left by a killed save.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import state
from test_state import assert_states_equal, trained_model

BOMB_BYTES = 1 << 30  # what the bomb member inflates to: 1 GiB of zeros
MODEL_SCRIPT = textwrap.dedent("""
    import resource, sys
    import minigrad as mg
    model = mg.nn.Sequential(mg.nn.Dense(4, use_bias=False), mg.nn.BatchNorm(momentum=0.7),
                             mg.nn.ReLU(), mg.nn.Dense(3))
    model.build((None, 5))
    try:
        model.load_weights(sys.argv[1])
        print("loaded")
    except (OSError, KeyError, ValueError) as error:
        print(type(error).__name__, str(error)[:300])
    try:  # this process's own peak: ru_maxrss would also count pytest's, inherited over exec
        with open("/proc/self/status") as status:
            print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")))
    except OSError:
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
""")


def write_bomb(path, good, name, declared_shape):
    """good's members, plus (or instead of the real) `name`: a deflated .npy whose header
    declares `declared_shape` of float32 and whose data is BOMB_BYTES of zeros."""
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(
        path, "w", zipfile.ZIP_DEFLATED, compresslevel=1
    ) as archive:
        for info in source.infolist():
            if info.filename != f"{name}.npy":
                archive.writestr(info.filename, source.read(info))
        with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": declared_shape})
            chunk = bytes(1 << 24)
            for _ in range(BOMB_BYTES // len(chunk)):
                member.write(chunk)
    return path


def peak_loading(path):
    """(what the load said, peak resident memory in MiB) of a fresh process loading `path`."""
    done = subprocess.run([sys.executable, "-c", MODEL_SCRIPT, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    said, peak = done.stdout.strip().rsplit("\n", 1)
    return said, int(peak) / 1024


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    model, _ = trained_model()
    path = tmp_path_factory.mktemp("weights") / "good.npz"
    model.save_weights(path)
    return path


@pytest.mark.parametrize("name, declared_shape, expected", [
    ("bomb", (BOMB_BYTES // 4,), "KeyError .*unexpected weight.*'bomb'"),  # an extra member
    ("3.bias", (BOMB_BYTES // 4,), "ValueError.*'3.bias' has shape \\(268435456,\\), expected \\(3,\\)"),
    ("3.bias", (3,), "OSError.*'3.bias' holds more data than the 12 bytes it declares"),
])
def test_a_file_that_lies_about_its_size_costs_no_more_memory_than_the_model(
    good_file, tmp_path, name, declared_shape, expected
):
    bomb = write_bomb(tmp_path / "bomb.npz", good_file, name, declared_shape)
    assert bomb.stat().st_size < 8 << 20  # a few MB on disk, 1 GiB inflated
    said, peak = peak_loading(bomb)
    good_said, good_peak = peak_loading(good_file)
    assert good_said == "loaded"
    assert re.search(expected, said), said
    # The model is a few KB; a rejected file may cost a few MB of reading buffers at most.
    assert peak - good_peak < 16, f"peak {peak:.0f} MiB against {good_peak:.0f} MiB for the good file"


@pytest.mark.parametrize("name, value, message", [
    ("1.num_batches_tracked", np.array(-1), "1.num_batches_tracked must be >= 0, got \\[-1\\]"),
    ("1.num_batches_tracked", np.array(2**64 - 1, dtype=np.uint64),
     "'1.num_batches_tracked' holds values that int64 cannot represent"),
    ("1.moving_variance", np.array([1.0, -0.5, 1.0, 1.0], np.float32),
     "1.moving_variance must be finite and >= 0, got \\[ 1.  -0.5  1.   1. \\]"),
    ("1.moving_variance", np.array([1.0, np.nan, 1.0, 1.0], np.float32), "1.moving_variance must be finite"),
    ("1.moving_mean", np.array([np.inf, 0, 0, 0], np.float32), "1.moving_mean must be finite"),
    ("3.bias", np.array([1e300, 0.0, 0.0]), "'3.bias' holds values that float32 cannot represent"),
])
def test_values_a_layer_cannot_hold_are_refused_and_the_model_is_unchanged(tmp_path, name, value, message):
    model, x = trained_model()
    values = dict(model.state_dict(), **{name: value})
    np.savez(tmp_path / "bad.npz", **values)
    target, _ = trained_model(seed=4)
    before = target.state_dict()
    for load in (lambda: target.load_weights(tmp_path / "bad.npz"), lambda: target.load_state_dict(values)):
        with pytest.raises(ValueError, match=message):
            load()
        assert_states_equal(target.state_dict(), before)  # bit for bit
    target.eval()
    assert np.isfinite(target(x).numpy()).all()


def test_any_weight_name_round_trips_even_savez_keywords(tmp_path):
    values = {"file": np.arange(3.0), "allow_pickle": np.ones(2, np.int64), "args": np.zeros((2, 2)),
              "0.kernel": np.full((1, 2), 7, np.float32)}
    state.save_npz(tmp_path / "names.npz", values)
    loaded = state.load_npz(tmp_path / "names.npz")
    assert_states_equal(loaded, values)
    assert_states_equal(dict(np.load(tmp_path / "names.npz")), values)  # still a plain .npz


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_the_saved_file_has_the_mode_open_would_give(tmp_path, umask):
    model, _ = trained_model()
    previous = os.umask(umask)
    try:
        model.save_weights(tmp_path / "w.npz")
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(previous)
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_save_errors_name_the_target_not_the_temporary_file(tmp_path):
    model, _ = trained_model()
    missing_folder = tmp_path / "no" / "such" / "w.npz"
    with pytest.raises(FileNotFoundError) as caught:
        model.save_weights(missing_folder)
    assert repr(str(missing_folder)) in str(caught.value) and ".partial" not in str(caught.value)
    (tmp_path / "folder.npz").mkdir()  # the target is a directory: the rename fails
    with pytest.raises(OSError) as caught:
        model.save_weights(tmp_path / "folder.npz")
    assert repr(str(tmp_path / "folder.npz")) in str(caught.value) and ".partial" not in str(caught.value)
    assert os.listdir(tmp_path) == ["folder.npz"]  # no temporary left beside it


def test_a_save_killed_midway_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    path = tmp_path / "w.npz"
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from minigrad.nn import state
        real = state.npy.write_array
        def slow(member, array, **options):
            real(member, array, **options)
            print("writing", flush=True)
            time.sleep(60)
        state.npy.write_array = slow
        state.save_npz({str(path)!r}, {{"a": np.zeros(3)}})
    """)
    saver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert saver.stdout.readline().strip() == "writing"
        saver.send_signal(signal.SIGKILL)
        saver.wait(timeout=30)
    finally:
        saver.kill()
        saver.stdout.close()
    leftovers = [name for name in os.listdir(tmp_path) if name.endswith(".partial")]
    assert leftovers == [f".w.npz.{saver.pid}.partial"]  # what a kill -9 leaves
    model, _ = trained_model()
    model.save_weights(path)
    assert os.listdir(tmp_path) == ["w.npz"]


def test_a_temporary_of_a_save_still_running_is_left_alone(tmp_path):
    alive = tmp_path / f".w.npz.{os.getppid()}.partial"  # our parent process runs
    alive.write_bytes(b"another process is writing this")
    model, _ = trained_model()
    model.save_weights(tmp_path / "w.npz")
    assert alive.exists()

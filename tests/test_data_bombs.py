"""Hostile and broken MNIST files: load_mnist names them, without running out of memory."""

import gzip
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

import minigrad as mg
from minigrad.data import MNIST_FILES
from test_data import small_mnist

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
CAP = 1 << 30  # minigrad.data.MAX_IDX_BYTES, the most data one IDX file may declare


def idx_header(*shape):
    """The header of an IDX file of unsigned bytes with this shape."""
    return (0x0800 + len(shape)).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)


def write_gzip_bomb(path, header, inflated_mib):
    """A .gz of a few hundred KB that inflates to `header` and then `inflated_mib` MiB of zeros.

    A gzip file may hold several members one after another, and gzip.open reads them as one
    stream; so one compressed MiB of zeros, written again and again, builds the bomb at once
    instead of compressing a GiB in the test.
    """
    zeros = gzip.compress(bytes(MiB), compresslevel=9)  # about 1 KB
    with open(path, "wb") as file:
        file.write(gzip.compress(header))
        for _ in range(inflated_mib):
            file.write(zeros)


def replace_idx(path, content, compress):
    """Put `content` where load_mnist reads `path`: the raw file, or a .gz instead of it."""
    if compress:
        path.unlink()
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(content))
    else:
        path.write_bytes(content)


PEAK_RSS = """
    import resource, sys
    from minigrad.data import load_mnist
    try:
        load_mnist(sys.argv[1])
        print("no error")
    except ValueError as error:
        print("ValueError:", error)
    try:  # this process's own peak: ru_maxrss would also count pytest's, inherited over exec
        with open("/proc/self/status") as status:
            peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print("peak MiB:", peak / (1 << 10))
"""


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    small_mnist(tmp_path)
    bomb = tmp_path / (MNIST_FILES["x_train"] + ".gz")
    (tmp_path / MNIST_FILES["x_train"]).unlink()  # so load_mnist finds the .gz
    write_gzip_bomb(bomb, idx_header(5, 28, 28), inflated_mib=1024)  # 1 GiB after 5 images
    assert bomb.stat().st_size < 2 * MiB
    # A fresh process, so that its peak resident memory is load_mnist's and not pytest's.
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(PEAK_RSS), str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    peak_mib = float(result.stdout.split("peak MiB:")[1])
    assert peak_mib < 300, f"load_mnist peaked at {peak_mib:.0f} MiB on a 1 GiB gzip bomb"
    assert "ValueError: load_mnist: " in result.stdout
    assert "train-images-idx3-ubyte.gz' has data after the 3920 bytes" in result.stdout


@pytest.mark.parametrize("compress", [False, True])
def test_an_enormous_declared_shape_is_refused_before_reading(tmp_path, compress):
    small_mnist(tmp_path)
    path = tmp_path / MNIST_FILES["x_train"]
    huge = 0xFFFFFFFF
    content = idx_header(huge, huge, huge) + bytes(100)
    replace_idx(path, content, compress)
    declared = f"\\({huge}, {huge}, {huge}\\), {huge ** 3} bytes"  # np.prod would wrap this around
    with pytest.raises(ValueError, match=f"train-images-idx3-ubyte(.gz)?' declares shape {declared} "
                                         "of data, more than the 1073741824 bytes"):
        mg.data.load_mnist(tmp_path)


def test_a_shape_just_over_the_cap_allocates_nothing(tmp_path):
    small_mnist(tmp_path)
    (tmp_path / MNIST_FILES["x_train"]).unlink()
    over = (1024, 1024, CAP // MiB + 1)  # one MiB more than the cap
    (tmp_path / (MNIST_FILES["x_train"] + ".gz")).write_bytes(gzip.compress(idx_header(*over)))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="more than the 1073741824 bytes minigrad reads"):
            mg.data.load_mnist(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * MiB  # a read of the declared size would have asked for over a GiB


@pytest.mark.parametrize("compress", [False, True])
def test_data_after_the_declared_shape_is_refused(tmp_path, compress):
    small_mnist(tmp_path)
    path = tmp_path / MNIST_FILES["y_test"]
    content = idx_header(3) + bytes([1, 2, 3]) + b"extra"
    replace_idx(path, content, compress)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte(.gz)?' has data after the 3 bytes "
                                         "that its shape \\(3,\\) declares"):
        mg.data.load_mnist(tmp_path)


@pytest.mark.parametrize("compress", [False, True])
def test_data_shorter_than_the_declared_shape_is_refused(tmp_path, compress):
    small_mnist(tmp_path)
    path = tmp_path / MNIST_FILES["y_test"]
    content = idx_header(3) + bytes([1, 2])
    replace_idx(path, content, compress)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte(.gz)?' declares shape \\(3,\\) "
                                         "\\(3 bytes of data\\) but holds only 2 bytes"):
        mg.data.load_mnist(tmp_path)


# Ways a .gz can be broken, each a function of the good file's bytes.
CORRUPTIONS = {
    "not gzip at all": lambda good: b"this is not gzip" + good,
    "cut inside the data": lambda good: good[:30],
    "cut before its checksum": lambda good: good[:-8],  # the data inflates, the trailer is gone
    "wrong checksum": lambda good: good[:-8] + bytes(8),
    "a garbled byte": lambda good: good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 0xFF])
    + good[len(good) // 2 + 1:],
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_corrupt_gzip_is_a_named_error(tmp_path, how):
    small_mnist(tmp_path, compress=True)
    path = tmp_path / (MNIST_FILES["x_train"] + ".gz")
    path.write_bytes(CORRUPTIONS[how](path.read_bytes()))
    with pytest.raises(ValueError, match="load_mnist: .*train-images-idx3-ubyte.gz"):
        mg.data.load_mnist(tmp_path)


"""The data module: the bundled digits, local MNIST IDX files, and mini-batches."""

import gzip

import numpy as np
import pytest

import minigrad as mg
from minigrad.data import MNIST_FILES


def test_digits_are_real_scaled_and_split_by_class():
    x_train, y_train, x_test, y_test = mg.data.load_digits(test_fraction=0.25, seed=0)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.shape[1] == 64 and len(x_train) + len(x_test) == 1797
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    counts_all = np.bincount(np.concatenate([y_train, y_test]))
    counts_test = np.bincount(y_test, minlength=10)
    np.testing.assert_allclose(counts_test, counts_all * 0.25, atol=0.51)  # stratified


def test_digits_split_is_fixed_by_its_seed():
    a, b = mg.data.load_digits(seed=1), mg.data.load_digits(seed=1)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(a[3], mg.data.load_digits(seed=2)[3])


def test_digits_reject_a_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction must be between 0 and 1, got 1.5"):
        mg.data.load_digits(test_fraction=1.5)



@pytest.mark.parametrize("fraction, message", [
    (0.001, "test_fraction=0.001 gives 1797 train and 0 test images, and digit 0 gets no test images"),
    (0.9999, "test_fraction=0.9999 gives 0 train and 1797 test images, and digit 0 gets no train images"),
])
def test_digits_reject_a_fraction_that_empties_a_split(fraction, message):
    with pytest.raises(ValueError, match=message):
        mg.data.load_digits(test_fraction=fraction)


def test_digits_reject_a_fraction_that_empties_one_digit():
    # 0.0028 x 178 images of digit 0 rounds to 0, while digits with 179 or more still get one:
    # the test set is not empty (7 images), but it is no longer stratified.
    with pytest.raises(ValueError, match="test_fraction=0.0028 gives 1790 train and 7 test images, "
                                         "and digit 0 gets no test images \\(178 train, 0 test\\)"):
        mg.data.load_digits(test_fraction=0.0028)


def test_digits_accept_the_smallest_fraction_that_fills_every_split():
    _, y_train, _, y_test = mg.data.load_digits(test_fraction=0.003)
    assert np.all(np.bincount(y_test, minlength=10) == 1) and len(y_train) == 1787


def write_idx(path, array, magic=None, compress=False):
    header = (magic if magic is not None else 0x0800 + array.ndim).to_bytes(4, "big")
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    content = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as file:
            file.write(content)
    else:
        path.write_bytes(content)


def small_mnist(folder, compress=False, train=5, test=3):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (train, 28, 28)), "y_train": rng.integers(0, 10, train),
        "x_test": rng.integers(0, 256, (test, 28, 28)), "y_test": rng.integers(0, 10, test),
    }
    for key, name in MNIST_FILES.items():
        write_idx(folder / name, arrays[key], compress=compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reads_the_four_idx_files(tmp_path, compress):
    arrays = small_mnist(tmp_path, compress)
    x_train, y_train, x_test, y_test = mg.data.load_mnist(tmp_path)
    assert x_train.shape == (5, 784) and x_test.shape == (3, 784) and x_train.dtype == np.float32
    np.testing.assert_allclose(x_train, arrays["x_train"].reshape(5, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    assert y_train.dtype == np.int64


def test_mnist_missing_file_is_named(tmp_path):
    small_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="no t10k-labels-idx1-ubyte \\(or t10k-labels-idx1-ubyte.gz\\)"):
        mg.data.load_mnist(tmp_path)


@pytest.mark.parametrize("break_it, message", [
    (lambda f: write_idx(f / MNIST_FILES["x_train"], np.zeros((5, 28, 28)), magic=0x0801),
     "train-images-idx3-ubyte' has magic number 0x00000801, expected 0x00000803"),
    (lambda f: (f / MNIST_FILES["y_test"]).write_bytes(b"\x00\x00"), "t10k-labels-idx1-ubyte' is too short"),
    (lambda f: (f / MNIST_FILES["x_test"]).write_bytes((f / MNIST_FILES["x_test"]).read_bytes()[:-10]),
     "t10k-images-idx3-ubyte' declares shape \\(3, 28, 28\\)"),
    (lambda f: write_idx(f / MNIST_FILES["y_train"], np.zeros(4)), "train has 5 images but 4 labels"),
])
def test_mnist_malformed_files_are_named(tmp_path, break_it, message):
    small_mnist(tmp_path)
    break_it(tmp_path)
    with pytest.raises(ValueError, match=message):
        mg.data.load_mnist(tmp_path)


def test_mnist_corrupt_gzip_is_named(tmp_path):
    small_mnist(tmp_path, compress=True)
    path = tmp_path / (MNIST_FILES["x_train"] + ".gz")
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ValueError, match="cannot read .*train-images-idx3-ubyte.gz"):
        mg.data.load_mnist(tmp_path)


def test_batches_cover_every_sample_once_per_epoch_and_drop_the_remainder():
    x, y = np.arange(23)[:, None].astype(np.float32), np.arange(23)
    batches = mg.data.Batches(x, y, batch_size=5, seed=0)
    assert len(batches) == 4
    first = [yb for _, yb in batches]
    assert all(len(b) == 5 for b in first) and len(np.unique(np.concatenate(first))) == 20
    second = [yb for _, yb in batches]
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))  # a new order
    again = [yb for _, yb in mg.data.Batches(x, y, batch_size=5, seed=0)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))  # reproducible
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb)  # x and y stay paired
    kept = list(mg.data.Batches(x, y, batch_size=5, shuffle=False, drop_last=False))
    assert len(kept) == 5 and len(kept[-1][1]) == 3
    np.testing.assert_array_equal(np.concatenate([b for _, b in kept]), y)


@pytest.mark.parametrize("args, message", [
    ((np.zeros((4, 2)), np.zeros(3), 2), "x has 4 samples but y has 3"),
    ((np.zeros((4, 2)), np.zeros(4), 0), "batch_size must be a positive int, got 0"),
    ((np.zeros((4, 2)), np.zeros(4), 5), "batch_size 5 is larger than the 4 samples"),
])
def test_batches_reject_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        mg.data.Batches(*args)

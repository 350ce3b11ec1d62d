"""Real data for the lessons, offline: scikit-learn's digits, local MNIST files, and mini-batches.

Nothing here downloads anything. load_digits reads the 8x8 digits that ship inside
scikit-learn; load_mnist reads the four IDX files of MNIST from a folder you filled yourself.
Both return NumPy arrays: (x_train, y_train, x_test, y_test), pixels as float32 in [0, 1],
labels as int64.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import Iterator

import numpy as np

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def load_digits(test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 1,797 handwritten 8x8 digits, as (N, 64) float32 in [0, 1], split per class.

    The split is stratified: each digit contributes test_fraction of its images to the test
    set, chosen by a generator seeded with `seed`, so the same seed gives the same split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"load_digits: test_fraction must be between 0 and 1, got {test_fraction!r}")
    from sklearn.datasets import load_digits as sklearn_digits  # the lessons extra installs it

    digits = sklearn_digits()
    images = (digits.data / 16.0).astype(np.float32)  # pixel values are 0..16
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test[members[: int(round(len(members) * test_fraction))]] = True
    _check_split(labels, test, test_fraction)
    return images[~test], labels[~test], images[test], labels[test]


def _check_split(labels: np.ndarray, test: np.ndarray, test_fraction: float) -> None:
    """Refuse a split that leaves a digit with no train or no test images.

    A tiny fraction rounds every digit's share down to 0 (an empty test set, so accuracy is
    nan), a fraction near 1 rounds it up to all of them (nothing left to train on). Checking
    every digit, not only the totals, keeps the promise that the split is stratified.
    """
    for digit in np.unique(labels):
        in_test = int(np.sum(test & (labels == digit)))
        in_train = int(np.sum(~test & (labels == digit)))
        if in_test == 0 or in_train == 0:
            empty = "test" if in_test == 0 else "train"
            raise ValueError(
                f"load_digits: test_fraction={test_fraction!r} gives {int(np.sum(~test))} train and "
                f"{int(np.sum(test))} test images, and digit {digit} gets no {empty} images "
                f"({in_train} train, {in_test} test); choose a fraction that keeps at least one "
                "image of every digit on each side"
            )


def load_mnist(path: str | os.PathLike):
    """MNIST from the four standard IDX files in folder `path` (each raw or .gz).

    Returns (x_train, y_train, x_test, y_test): images flattened to (N, 784) float32 in
    [0, 1], labels int64. A missing or malformed file is an error that names it.
    """
    folder = os.fspath(path)
    arrays = {}
    for key, name in MNIST_FILES.items():
        arrays[key] = _read_idx(_find(folder, name), expected_ndim=3 if key.startswith("x") else 1)
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(images) != len(labels):
            raise ValueError(
                f"load_mnist: {split} has {len(images)} images but {len(labels)} labels in {folder!r}"
            )
    return tuple(
        arrays[key].reshape(len(arrays[key]), -1).astype(np.float32) / 255.0
        if key.startswith("x") else arrays[key].astype(np.int64)
        for key in MNIST_FILES
    )


def _find(folder: str, name: str) -> str:
    for candidate in (name, name + ".gz"):
        if os.path.isfile(os.path.join(folder, candidate)):
            return os.path.join(folder, candidate)
    raise FileNotFoundError(
        f"load_mnist: no {name} (or {name}.gz) in {folder!r}; download the four MNIST files "
        "there first (minigrad never downloads)"
    )


# The largest IDX data section we agree to read: MNIST's biggest file holds 47 MB, EMNIST's
# under 1 GB. A header that declares more is corrupt (or hostile), and is refused before
# anything is allocated.
MAX_IDX_BYTES = 1 << 30


def _read_idx(path: str, expected_ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes: magic 0x0000 08 ndim, ndim big-endian sizes, the data.

    The header is read first and the data section after it, exactly as many bytes as the
    header declares: never the whole file at once. A small .gz can inflate to gigabytes
    (a "gzip bomb"), and its real size is only known by inflating it, so every read here is
    bounded by the declared shape, and the declared shape is bounded by MAX_IDX_BYTES.
    """
    compressed = path.endswith(".gz")
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as file:
            shape = _read_idx_header(file, path, expected_ndim)
            size = _idx_data_size(path, shape, expected_ndim, compressed)
            data = file.read(size)
            if len(data) != size:
                raise _too_short(path, shape, size, len(data))
            if file.read(1):  # read(1), not read(): whatever follows may be a bomb
                raise _trailing_data(path, shape, size)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"load_mnist: cannot read {path!r}: {error}") from error
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _read_idx_header(file, path: str, expected_ndim: int) -> tuple[int, ...]:
    """The shape from an IDX header, after checking its magic number."""
    header_size = 4 + 4 * expected_ndim
    header = file.read(header_size)
    if len(header) < header_size:
        raise ValueError(
            f"load_mnist: {path!r} is too short for an IDX header ({len(header)} bytes, "
            f"expected {header_size})"
        )
    magic = int.from_bytes(header[:4], "big")
    if magic != 0x0800 + expected_ndim:
        raise ValueError(
            f"load_mnist: {path!r} has magic number {magic:#010x}, expected "
            f"{0x0800 + expected_ndim:#010x} (unsigned bytes, {expected_ndim} dimensions)"
        )
    return tuple(int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(expected_ndim))


def _idx_data_size(path: str, shape: tuple[int, ...], expected_ndim: int, compressed: bool) -> int:
    """The data bytes that `shape` declares, refused if absurd or (raw files) not what is there."""
    size = 1
    for n in shape:
        size *= n  # Python ints: no overflow, unlike np.prod, which wraps around in int64
    if size > MAX_IDX_BYTES:
        raise ValueError(
            f"load_mnist: {path!r} declares shape {shape}, {size} bytes of data, more than the "
            f"{MAX_IDX_BYTES} bytes minigrad reads from one IDX file; the header is corrupt"
        )
    if not compressed:  # a raw file's size is known without reading it; gzip's is not
        held = os.path.getsize(path) - (4 + 4 * expected_ndim)
        if held < size:
            raise _too_short(path, shape, size, held)
        if held > size:
            raise _trailing_data(path, shape, size)
    return size


def _too_short(path: str, shape: tuple[int, ...], size: int, held: int) -> ValueError:
    """The error for a file that ends before the data its header declares."""
    return ValueError(
        f"load_mnist: {path!r} declares shape {shape} ({size} bytes of data) but holds only "
        f"{held} bytes of data"
    )


def _trailing_data(path: str, shape: tuple[int, ...], size: int) -> ValueError:
    """The error for a file that goes on after the data its header declares."""
    return ValueError(
        f"load_mnist: {path!r} has data after the {size} bytes that its shape {shape} declares; "
        "expected the file to end there"
    )


class Batches:
    """Mini-batches of (x, y): iterate once per epoch.

    shuffle=True draws a new order every epoch from a generator seeded once with `seed`, so
    a run reproduces. drop_last=True leaves out a final batch smaller than batch_size (BatchNorm
    needs more than one value per feature, and equal batches make steps comparable).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True) -> None:
        if len(x) != len(y):
            raise ValueError(f"Batches: x has {len(x)} samples but y has {len(y)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Batches: batch_size must be a positive int, got {batch_size!r}")
        if drop_last and batch_size > len(x):
            raise ValueError(
                f"Batches: batch_size {batch_size} is larger than the {len(x)} samples, so "
                "drop_last=True would give no batch at all"
            )
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        full, rest = divmod(len(self.x), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.rng.permutation(len(self.x)) if self.shuffle else np.arange(len(self.x))
        for batch in range(len(self)):
            chosen = order[batch * self.batch_size: (batch + 1) * self.batch_size]
            yield self.x[chosen], self.y[chosen]

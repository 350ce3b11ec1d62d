"""Saving and loading a model's state as .npz: written atomically, read without unpickling.

The state is a flat dict of NumPy arrays keyed by dotted names ("0.kernel", "1.moving_mean").
save writes to a temporary file beside the target and renames it into place, so a crash in
the middle of a save leaves the old file (or no file), never a truncated one. load opens the
file with allow_pickle=False, so a weights file can never run code.
"""

from __future__ import annotations

import os
import tempfile
from typing import Mapping

import numpy as np


def save_npz(path: str | os.PathLike, state: Mapping[str, np.ndarray]) -> None:
    """Write `state` to `path` (.npz, uncompressed) atomically."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=directory
    )
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **state)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of the .npz at `path`; an unreadable file is an OSError naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_weights: no weights file at {path!r}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not named weights")
        with archive:
            return {name: archive[name] for name in archive.files}
    except Exception as error:  # zipfile, zlib, format and pickle refusals alike
        raise OSError(
            f"load_weights: {path!r} is not a readable .npz weights file ({error})"
        ) from error

"""Saving and loading a model's state as .npz: written atomically, read without unpickling,
checked before a byte of data is read.

The state is a flat dict of NumPy arrays keyed by dotted names ("0.kernel", "1.moving_mean").
The file is an ordinary .npz (np.load opens it): a zip of one NAME.npy member per weight.

Saving writes a temporary file beside the target and renames it into place, so a crash in
the middle of a save leaves the old file (or no file), never a truncated one. The temporary
file carries the saving process's id, so a later save removes one that a killed save left.

Loading never unpickles (object arrays are refused), and it reads in two steps: first only
each member's .npy header (name, dtype, shape), which the caller checks against the model;
then each member's data, at most the bytes its header declares. A file that lies about its
size (a "zip bomb" member that inflates to gigabytes) is refused after reading at most one
byte more than the model itself holds.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import zipfile
import zlib
from typing import IO, Callable, Iterator, Mapping

import numpy as np
from numpy.lib import format as npy

#: What a file's member says it holds: {name: (shape, dtype)}.
Layout = Mapping[str, tuple[tuple[int, ...], np.dtype]]


def save_npz(path: str | os.PathLike, state: Mapping[str, np.ndarray]) -> None:
    """Write `state` to `path` (.npz, uncompressed) atomically; any weight name round-trips.

    The file gets the mode a plain open() would give (0666 less the umask). An error names
    `path`, not the temporary file.
    """
    path = os.fspath(path)
    temporary = os.path.join(os.path.dirname(os.path.abspath(path)),
                             f".{os.path.basename(path)}.{os.getpid()}.partial")
    _remove_stale_temporaries(path)
    try:
        # os.open with 0o666 applies the umask, as open() does; O_EXCL refuses a link planted there.
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(handle, "wb") as file:
            # zipfile and write_array directly, not np.savez(file, **state): as keyword
            # arguments, weights named "file" or "allow_pickle" would clash with savez's own.
            with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for name, value in state.items():
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        npy.write_array(member, np.asarray(value), allow_pickle=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # atomic on POSIX and Windows
    except BaseException as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError):
            # OSError(errno, text) builds the right subclass (PermissionError, ...).
            raise OSError(error.errno, f"save_weights: cannot save to {path!r}: "
                                       f"{error.strerror or error}") from error
        raise


def _remove_stale_temporaries(path: str) -> None:
    """Delete temporary files of earlier saves to `path` whose process no longer runs."""
    directory, base = os.path.split(os.path.abspath(path))
    for leftover in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(base)}.*.partial")):
        pid = leftover[len(os.path.join(directory, f".{base}.")):-len(".partial")]
        if pid.isdigit() and not _process_alive(int(pid)):
            try:
                os.remove(leftover)
            except OSError:
                pass  # another save cleaned it up first


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True


def load_npz(
    path: str | os.PathLike, check: Callable[[Layout], None] | None = None
) -> dict[str, np.ndarray]:
    """Read the named arrays of the .npz at `path`, bounded by what their headers declare.

    check(layout), if given, sees {name: (shape, dtype)} from the headers before any data is
    read, and raises to refuse the file. An unreadable or inconsistent file is an OSError
    naming it; errors from `check` pass through as they are.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_weights: no weights file at {path!r}")
    with _named_errors(path):
        with open(path, "rb") as file:
            if file.read(len(npy.MAGIC_PREFIX)) == npy.MAGIC_PREFIX:
                raise ValueError("it is a .npy file: it holds a single array, not named weights")
        archive = zipfile.ZipFile(path)
    with archive:
        with _named_errors(path):
            members = _members(archive)
            headers = {name: _header(archive, info) for name, info in members.items()}
        if check is not None:
            check({name: (shape, dtype) for name, (shape, dtype, _) in headers.items()})
        with _named_errors(path):
            return {name: _data(archive, info, name) for name, info in members.items()}


@contextlib.contextmanager
def _named_errors(path: str) -> Iterator[None]:
    """Turn whatever a broken file raises (zipfile, zlib, .npy format) into an OSError naming it."""
    try:
        yield
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError,
            NotImplementedError, zlib.error) as error:
        raise OSError(f"load_weights: {path!r} is not a readable .npz weights file ({error})") from error


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """{weight name: zip member}: every member must be NAME.npy, each name once."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise ValueError(f"member {info.filename!r} is not a .npy array")
        name = info.filename[: -len(".npy")]
        if name in members:
            raise ValueError(f"weight {name!r} appears twice")
        members[name] = info
    return members


def _read_header(member: IO[bytes], name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran_order) from the magic and header at the start of a .npy stream."""
    version = npy.read_magic(member)
    if version == (1, 0):
        shape, fortran_order, dtype = npy.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, fortran_order, dtype = npy.read_array_header_2_0(member)
    else:
        raise ValueError(f"weight {name!r} uses .npy format {version}, expected 1.0 or 2.0")
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise ValueError(f"weight {name!r} has dtype {dtype}; weights are numbers (bool, int "
                         "or float), never objects")
    return tuple(shape), dtype, fortran_order


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype, bool]:
    with archive.open(info) as member:
        return _read_header(member, info.filename[: -len(".npy")])


def _data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    """One member's array, reading exactly the bytes its header declares, and one more to
    prove there is nothing after them."""
    with archive.open(info) as member:
        shape, dtype, fortran_order = _read_header(member, name)
        expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
        if expected > info.file_size:  # refused before allocating: the member is smaller
            raise ValueError(f"weight {name!r} declares {expected} bytes of data, more than "
                             f"its {info.file_size}-byte member holds")
        data = bytearray(expected)  # writable, so the array needs no copy
        view, filled = memoryview(data), 0
        while filled < expected:
            count = member.readinto(view[filled:])
            if not count:
                raise ValueError(f"weight {name!r} declares {expected} bytes of data but holds {filled}")
            filled += count
        if member.read(1):
            raise ValueError(f"weight {name!r} holds more data than the {expected} bytes it declares")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    return np.ascontiguousarray(array) if fortran_order else array

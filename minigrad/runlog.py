"""Training-run logs as CSV: one row per evaluation, written by the lessons, read by the plots.

Columns: step, loss, train_accuracy, test_accuracy, learning_rate. A run's name is its file
name without .csv, which is what the plot's legend shows.
"""

from __future__ import annotations

import csv
import os

COLUMNS = ("step", "loss", "train_accuracy", "test_accuracy", "learning_rate")


class RunLog:
    """Appends rows to runs/NAME.csv (or any path), creating the folder; use as a context manager."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = open(self.path, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS)

    def log(self, step: int, loss: float, train_accuracy: float, test_accuracy: float,
            learning_rate: float) -> None:
        """Write one row."""
        self._writer.writerow([step, f"{loss:.6g}", f"{train_accuracy:.6g}", f"{test_accuracy:.6g}",
                               f"{learning_rate:g}"])

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_run(path: str | os.PathLike) -> dict[str, list[float]]:
    """A run log's columns as lists of floats; a missing file or a missing column is named.

    The file must be UTF-8 text; a byte-order mark at its start (spreadsheet programs on
    Windows write one) is skipped. Any unreadable content is a ValueError naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no run log at {path!r}")
    # "utf-8-sig" drops a leading BOM, which "utf-8" would glue onto the first column's name
    # ("\ufeffstep"), so that the step column would seem to be missing.
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        try:
            return _read_columns(path, reader)
        except UnicodeDecodeError as error:  # a ValueError too, but one that names no file
            raise ValueError(
                f"{path!r} is not UTF-8 text (byte {error.object[error.start]:#04x} cannot be "
                "decoded); expected a CSV run log written by minigrad.runlog"
            ) from None
        except csv.Error as error:  # e.g. a field over csv's limit of 131,072 characters
            line = reader.reader.line_num  # csv.reader's count: DictReader's lags a row behind
            raise ValueError(f"{path!r} line {line}: not a valid CSV row: {error}") from None


def _read_columns(path: str, reader: csv.DictReader) -> dict[str, list[float]]:
    """Check the header has every column, then parse each row's values as floats."""
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(
            f"{path!r} is not a run log: it lacks the column(s) {missing}; expected {list(COLUMNS)}"
        )
    columns: dict[str, list[float]] = {c: [] for c in COLUMNS}
    for line, row in enumerate(reader, start=2):
        try:
            for c in COLUMNS:
                columns[c].append(float(row[c]))
        except (TypeError, ValueError):
            raise ValueError(f"{path!r} line {line}: {c}={row[c]!r} is not a number") from None
    return columns

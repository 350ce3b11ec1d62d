"""Run logs (CSV) and scripts/plot_curves.py, run as a user runs it."""

import subprocess
import sys
from pathlib import Path

import pytest

from minigrad.runlog import COLUMNS, RunLog, read_run

ROOT = Path(__file__).resolve().parents[1]


def write_run(path, rows=3):
    with RunLog(path) as log:
        for step in range(rows):
            log.log(step * 10, 2.0 / (step + 1), 0.5 + 0.1 * step, 0.4 + 0.1 * step, 0.1)


def test_a_run_log_reads_back_what_was_written(tmp_path):
    write_run(tmp_path / "runs" / "a.csv")
    run = read_run(tmp_path / "runs" / "a.csv")
    assert list(run) == list(COLUMNS)
    assert run["step"] == [0.0, 10.0, 20.0] and run["loss"] == [2.0, 1.0, pytest.approx(2 / 3, rel=1e-5)]


def plot(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "plot_curves.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_plot_curves_writes_a_png_with_every_run(tmp_path):
    write_run(tmp_path / "bn.csv")
    write_run(tmp_path / "plain.csv", rows=5)
    out = tmp_path / "out" / "curves.png"
    result = plot(tmp_path / "bn.csv", tmp_path / "plain.csv", "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out) in result.stdout


def test_plot_curves_names_a_missing_file_and_a_bad_csv(tmp_path):
    result = plot(tmp_path / "absent.csv", "-o", tmp_path / "x.png")
    assert result.returncode == 2 and "no run log at" in result.stderr and "absent.csv" in result.stderr
    (tmp_path / "bad.csv").write_text("step,loss\n1,2\n")
    result = plot(tmp_path / "bad.csv", "-o", tmp_path / "x.png")
    assert result.returncode == 2 and "lacks the column(s) ['train_accuracy'" in result.stderr
    (tmp_path / "nan.csv").write_text(",".join(COLUMNS) + "\n1,oops,0,0,0.1\n")
    result = plot(tmp_path / "nan.csv", "-o", tmp_path / "x.png")
    assert result.returncode == 2 and "line 2: loss='oops' is not a number" in result.stderr
    assert not (tmp_path / "x.png").exists()

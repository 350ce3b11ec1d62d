"""Run logs (CSV) and scripts/plot_curves.py, run as a user runs it."""

import re
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


@pytest.mark.parametrize("name, message", [
    ("curves", "the output must be a .png file, got '.*curves'; did you mean '.*curves.png'\\?"),
    ("curves.pdf", "the output must be a .png file, got '.*curves.pdf'"),
])
def test_plot_curves_refuses_an_output_that_is_not_a_png(tmp_path, name, message):
    # Given `-o curves`, matplotlib would write curves.png and the script would report `curves`.
    write_run(tmp_path / "a.csv")
    result = plot(tmp_path / "a.csv", "-o", tmp_path / "out" / name)
    assert result.returncode == 2 and re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_run_log_with_a_byte_order_mark_reads(tmp_path):
    # Spreadsheet programs on Windows start a UTF-8 CSV with a BOM, which would hide `step`.
    write_run(tmp_path / "a.csv")
    text = (tmp_path / "a.csv").read_text()
    (tmp_path / "bom.csv").write_text(text, encoding="utf-8-sig")
    assert (tmp_path / "bom.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    assert read_run(tmp_path / "bom.csv") == read_run(tmp_path / "a.csv")


def test_plot_curves_names_a_field_over_the_csv_limit_without_a_traceback(tmp_path):
    rows = ["0,1,0,0,0.1", "1," + "9" * 140_000 + ",0,0,0.1"]  # line 3 has a 140,000-digit loss
    (tmp_path / "huge.csv").write_text("\n".join([",".join(COLUMNS), *rows]) + "\n")
    result = plot(tmp_path / "huge.csv", "-o", tmp_path / "x.png")
    assert result.returncode == 2, result.stderr
    assert "huge.csv' line 3: not a valid CSV row: field larger than field limit" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.png").exists()


def test_a_run_log_that_is_not_utf8_is_named(tmp_path):
    write_run(tmp_path / "a.csv")
    latin1 = (tmp_path / "a.csv").read_bytes() + "# café\n".encode("latin-1")
    (tmp_path / "latin1.csv").write_bytes(latin1)
    with pytest.raises(ValueError, match="latin1.csv' is not UTF-8 text \\(byte 0xe9 cannot be decoded"):
        read_run(tmp_path / "latin1.csv")

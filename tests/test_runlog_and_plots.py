"""Run logs (CSV) and scripts/plot_curves.py, run as a user runs it."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
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


# Grouping runs over seeds (--group): one mean line and min-max band per configuration.

def load_plot_curves():
    """The script as a module, so that its functions can be called as well as the script run."""
    spec = importlib.util.spec_from_file_location("plot_curves", ROOT / "scripts" / "plot_curves.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plot_curves = load_plot_curves()


def write_values(path, steps, loss, test_accuracy):
    """A run log with the given columns; values of 4 decimals survive the log's 6 digits exactly."""
    with RunLog(path) as log:
        for step, each_loss, accuracy in zip(steps, loss, test_accuracy):
            log.log(int(step), float(each_loss), 0.5, float(accuracy), 0.1)


def write_sweep(folder, configurations=("relu-bn-lr0.5", "sigmoid-plain-lr1.0"), seeds=3, steps=5):
    """seeds logs per configuration, named like lesson 7's; returns the paths and the values."""
    rng = np.random.default_rng(0)
    paths, values = [], {}
    for name in configurations:
        loss = np.round(rng.uniform(0.1, 2.0, size=(seeds, steps)), 4)
        accuracy = np.round(rng.uniform(0.1, 1.0, size=(seeds, steps)), 4)
        values[name] = loss, accuracy
        for seed in range(seeds):
            paths.append(folder / f"{name}-seed{seed}.csv")
            write_values(paths[-1], np.arange(steps) * 20, loss[seed], accuracy[seed])
    return paths, values


def legend_labels(figure):
    (legend,) = figure.legends  # one legend, for both panels
    return [text.get_text() for text in legend.get_texts()]


def test_group_runs_puts_the_seeds_of_one_configuration_together(tmp_path):
    paths, _ = write_sweep(tmp_path)
    groups = plot_curves.group_runs([str(p) for p in paths], r"-seed\d+")
    assert list(groups) == ["relu-bn-lr0.5", "sigmoid-plain-lr1.0"]
    assert groups["relu-bn-lr0.5"] == [read_run(p) for p in paths[:3]]
    assert groups["sigmoid-plain-lr1.0"] == [read_run(p) for p in paths[3:]]


def test_a_grouped_plot_has_one_legend_entry_per_configuration(tmp_path):
    paths, _ = write_sweep(tmp_path)
    figure = plot_curves.plot_runs([str(p) for p in paths], str(tmp_path / "g.png"), group_by=r"-seed\d+")
    assert legend_labels(figure) == ["relu-bn-lr0.5 (3 seeds)", "sigmoid-plain-lr1.0 (3 seeds)"]
    loss_axes, accuracy_axes = figure.axes
    assert (loss_axes.get_ylabel(), accuracy_axes.get_ylabel()) == ("training loss (log scale)", "test accuracy")
    assert loss_axes.get_xlabel() == accuracy_axes.get_xlabel() == "step"
    assert "min to max over the seeds" in figure.get_suptitle()
    # and as a user runs it: the PNG is written, and is more than an empty canvas
    result = plot(*paths, "--group", "-o", tmp_path / "cli.png")
    assert result.returncode == 0, result.stderr
    assert f"plot written to {tmp_path / 'cli.png'}" in result.stdout and result.stderr == ""
    assert (tmp_path / "cli.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "cli.png").stat().st_size > 20_000


def test_the_mean_line_and_the_band_are_numpys_mean_min_and_max_over_the_seeds(tmp_path):
    paths, values = write_sweep(tmp_path)
    figure = plot_curves.plot_runs([str(p) for p in paths], str(tmp_path / "g.png"), group_by=r"-seed\d+")
    loss_axes, accuracy_axes = figure.axes
    steps = np.arange(5) * 20
    for index, (loss, accuracy) in enumerate(values.values()):
        for axes, table in ((loss_axes, loss), (accuracy_axes, accuracy)):
            line = axes.get_lines()[index]
            np.testing.assert_array_equal(line.get_xdata(), steps)
            np.testing.assert_allclose(line.get_ydata(), table.mean(axis=0), rtol=1e-12)
            band = axes.collections[index].get_paths()[0].vertices  # the polygon around the band
            for step, low, high in zip(steps, table.min(axis=0), table.max(axis=0)):
                on_step = band[np.isclose(band[:, 0], step)]
                assert np.isclose(on_step[:, 1], low).any() and np.isclose(on_step[:, 1], high).any()
                assert on_step[:, 1].min() == pytest.approx(low) and on_step[:, 1].max() == pytest.approx(high)


def test_runs_of_unequal_length_are_averaged_over_the_runs_present_at_each_step(tmp_path):
    # fit stops a run whose loss is not finite, so a diverged seed has fewer records.
    long_steps, short_steps = [0, 20, 40, 60], [0, 20]
    accuracy = {0: [0.1, 0.5, 0.7, 0.9], 1: [0.2, 0.6, 0.8, 0.95], 2: [0.3, 0.1]}  # seed 2 stopped
    for seed, values in accuracy.items():
        steps = short_steps if seed == 2 else long_steps
        write_values(tmp_path / f"relu-plain-lr1.0-seed{seed}.csv", steps, [1.0] * len(steps), values)
    paths = sorted(str(p) for p in tmp_path.glob("*.csv"))
    (runs,) = plot_curves.group_runs(paths, r"-seed\d+").values()
    padded = np.array([accuracy[0], accuracy[1], accuracy[2] + [np.nan, np.nan]])  # nan: no record
    steps, mean, low, high = plot_curves.aggregate(runs, "test_accuracy")
    np.testing.assert_array_equal(steps, long_steps)
    np.testing.assert_allclose(mean, np.nanmean(padded, axis=0))
    np.testing.assert_allclose(low, np.nanmin(padded, axis=0))
    np.testing.assert_allclose(high, np.nanmax(padded, axis=0))
    figure = plot_curves.plot_runs(paths, str(tmp_path / "g.png"), group_by=r"-seed\d+")
    assert legend_labels(figure) == ["relu-plain-lr1.0 (3 seeds, 1 stopped early: x)"]
    marker = figure.axes[1].get_lines()[1]  # the x where seed 2 stopped
    assert marker.get_marker() == "x" and (marker.get_xdata()[0], marker.get_ydata()[0]) == (20, 0.1)


def test_the_target_line_has_a_legend_entry(tmp_path):
    paths, _ = write_sweep(tmp_path)
    figure = plot_curves.plot_runs([str(p) for p in paths], str(tmp_path / "t.png"), group_by=r"-seed\d+",
                                   target=0.95)
    assert legend_labels(figure)[-1] == "95% target"
    target = figure.axes[1].get_lines()[-1]
    assert target.get_linestyle() == ":" and list(target.get_ydata()) == [0.95, 0.95]
    result = plot(*paths, "--group", "--target", "0.95", "-o", tmp_path / "cli.png")
    assert result.returncode == 0 and (tmp_path / "cli.png").exists(), result.stderr
    result = plot(*paths, "--target", "95", "-o", tmp_path / "x.png")
    assert result.returncode == 2 and "expected a test accuracy in (0, 1], e.g. 0.95, got '95'" in result.stderr


def test_more_than_ten_runs_without_group_suggest_it(tmp_path):
    paths, _ = write_sweep(tmp_path, configurations=("a", "b", "c", "d"))  # 12 runs
    result = plot(*paths, "-o", tmp_path / "all.png")
    assert result.returncode == 0 and "12 runs make 12 lines; --group draws one line per" in result.stderr
    figure = plot_curves.plot_runs([str(p) for p in paths], str(tmp_path / "all.png"))
    assert legend_labels(figure) == [p.stem for p in paths]  # ungrouped: one entry per run, as before
    result = plot(*paths[:10], "-o", tmp_path / "ten.png")
    assert result.returncode == 0 and result.stderr == ""
    result = plot(*paths, "--group", "-o", tmp_path / "grouped.png")
    assert result.returncode == 0 and result.stderr == ""


def test_a_group_by_that_is_not_a_regular_expression_is_named(tmp_path):
    paths, _ = write_sweep(tmp_path, seeds=1)
    result = plot(*paths, "--group-by", "seed(", "-o", tmp_path / "x.png")
    assert result.returncode == 2, result.stderr
    assert "--group-by 'seed(' is not a valid regular expression: missing )" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.png").exists()
    with pytest.raises(ValueError, match=r"--group-by '\[' is not a valid regular expression"):
        plot_curves.group_runs([str(p) for p in paths], "[")


def test_group_by_takes_another_pattern_and_implies_group(tmp_path):
    for name in ("bn-run1", "bn-run2", "plain-run1"):
        write_run(tmp_path / f"{name}.csv")
    paths = sorted(str(p) for p in tmp_path.glob("*.csv"))
    figure = plot_curves.plot_runs(paths, str(tmp_path / "g.png"), group_by=r"-run\d")
    assert legend_labels(figure) == ["bn (2 runs)", "plain (1 run)"]  # not seeds: the pattern is not -seed
    result = plot(*paths, r"--group-by=-run\d", "-o", tmp_path / "cli.png")  # "=": it starts with -
    assert result.returncode == 0 and (tmp_path / "cli.png").exists(), result.stderr

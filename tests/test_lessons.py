"""Every lesson runs, in quick mode, headless, and its own assertions hold."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minigrad.runlog import read_run

LESSONS = sorted((Path(__file__).parent.parent / "lessons").glob("[0-9][0-9]_*.py"))
# The plots each lesson must write under runs/ (and say where), and its run logs.
PLOTS = {
    "06_moving_averages": ["lesson06_moving_averages.png"],
    "07_training_with_and_without_bn": ["lesson07_test_accuracy.png", "lesson07_momentum_warmup.png"],
    "08_internal_covariate_shift": ["lesson08_sigmoid_input_percentiles.png"],
}
RUN_LOGS = {"07_training_with_and_without_bn": "lesson07", "08_internal_covariate_shift": "lesson08"}


def run_lesson(name, *arguments, cwd):
    """Run lessons/NAME in quick mode, headless, on the default backend, from folder cwd."""
    environment = dict(os.environ, MPLBACKEND="Agg", MINIGRAD_QUICK="1")
    environment.pop("MINIGRAD_BACKEND", None)
    lesson = Path(__file__).parent.parent / "lessons" / name
    return subprocess.run([sys.executable, str(lesson), "--quick", *arguments], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def test_there_are_lessons():
    assert LESSONS, "lessons/ should hold numbered lesson scripts"


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_in_quick_mode(lesson, tmp_path):
    result = run_lesson(lesson.name, cwd=tmp_path)
    assert result.returncode == 0, f"{lesson.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{lesson.name} printed nothing"
    for plot in PLOTS.get(lesson.stem, []):
        path = tmp_path / "runs" / plot
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{plot} was not written"
        assert path.stat().st_size > 10_000, f"{plot} is nearly empty"
        assert str(path.resolve()) in result.stdout, f"{lesson.name} should print where {plot} went"
    if lesson.stem in RUN_LOGS:
        logs = sorted((tmp_path / "runs" / RUN_LOGS[lesson.stem]).glob("*.csv"))
        assert logs, f"{lesson.name} should write its run logs under runs/{RUN_LOGS[lesson.stem]}/"
        for log in logs:
            assert read_run(log)["step"][0] == 0.0


def test_gpu_lesson_code_path_runs_on_numpy(tmp_path):
    """Lesson 10's training and comparisons, run with NumPy standing in for CuPy."""
    result = run_lesson("10_training_on_the_gpu.py", "--backend", "numpy", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "final accuracy with BatchNorm differs" in result.stdout


def test_gpu_lesson_says_why_it_does_nothing_without_a_gpu(tmp_path):
    from minigrad.backend import cupy_unavailable_reason

    reason = cupy_unavailable_reason()
    if reason is None:
        pytest.skip("CuPy works here, so lesson 10 trains on the GPU (test_lesson_runs_in_quick_mode runs it)")
    result = run_lesson("10_training_on_the_gpu.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No GPU backend on this machine" in result.stdout and reason in result.stdout


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_is_a_notebook_with_a_quick_flag_and_a_headless_backend(lesson):
    text = lesson.read_text()
    assert text.startswith("# %% [markdown]"), f"{lesson.name} should open with a markdown cell"
    assert text.count("# %%") >= 3, f"{lesson.name} should be split into # %% cells"
    assert '"--quick"' in text, f"{lesson.name} should accept --quick"
    if "matplotlib.pyplot" in text:
        assert text.index('matplotlib.use("Agg")') < text.index("import matplotlib.pyplot"), (
            f"{lesson.name} should select the Agg backend before importing pyplot"
        )

"""Every lesson runs in quick mode, as a headless script and as a notebook, and its own
assertions hold."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigrad.runlog import read_run

ROOT = Path(__file__).parent.parent
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))
# The plots each lesson must write under runs/ (and say where, and show in a notebook), and its run logs.
PLOTS = {
    "06_moving_averages": ["lesson06_moving_averages.png"],
    "07_training_with_and_without_bn": ["lesson07_test_accuracy.png", "lesson07_momentum_warmup.png"],
    "08_internal_covariate_shift": ["lesson08_sigmoid_input_percentiles.png"],
    "11_small_batches_and_renorm": ["lesson11_batch_size.png", "lesson11_statistics.png", "lesson11_non_iid.png"],
    "13_batchnorm_in_a_convnet": ["lesson13_test_accuracy.png"],
}
RUN_LOGS = {"07_training_with_and_without_bn": "lesson07", "08_internal_covariate_shift": "lesson08",
            "11_small_batches_and_renorm": "lesson11", "13_batchnorm_in_a_convnet": "lesson13"}
PNG = b"\x89PNG\r\n\x1a\n"


def lesson_environment(runs):
    """Quick mode, outputs under `runs`, the default backend."""
    environment = dict(os.environ, MINIGRAD_QUICK="1", MINIGRAD_RUNS=str(runs))
    environment.pop("MINIGRAD_BACKEND", None)
    environment.pop("MPLBACKEND", None)  # the lesson must choose Agg itself
    return environment


def run_lesson(name, *arguments, cwd):
    """Run lessons/NAME as a script in quick mode, from folder cwd, outputs under cwd/runs."""
    return subprocess.run([sys.executable, str(ROOT / "lessons" / name), "--quick", *arguments], cwd=cwd,
                          env=lesson_environment(Path(cwd) / "runs"), capture_output=True, text=True,
                          timeout=300)


def check_outputs(lesson, runs, printed):
    for plot in PLOTS.get(lesson.stem, []):
        path = runs / plot
        assert path.is_file() and path.read_bytes()[:8] == PNG, f"{plot} was not written"
        assert path.stat().st_size > 10_000, f"{plot} is nearly empty"
        assert str(path.resolve()) in printed, f"{lesson.name} should print where {plot} went"
    if lesson.stem in RUN_LOGS:
        logs = sorted((runs / RUN_LOGS[lesson.stem]).glob("*.csv"))
        assert logs, f"{lesson.name} should write its run logs under runs/{RUN_LOGS[lesson.stem]}/"
        for log in logs:
            assert read_run(log)["step"][0] == 0.0


def test_there_are_lessons():
    assert len(LESSONS) >= 11, "lessons/ should hold the numbered lesson scripts"


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_as_a_script_in_quick_mode(lesson, tmp_path):
    result = run_lesson(lesson.name, cwd=tmp_path)
    assert result.returncode == 0, f"{lesson.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{lesson.name} printed nothing"
    check_outputs(lesson, tmp_path / "runs", result.stdout)


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_as_a_notebook_in_quick_mode(lesson, tmp_path, monkeypatch):
    """jupytext turns the # %% script into a notebook; nbclient runs it in a real kernel,
    from the lessons/ folder as Jupyter would. Plots must show inline and be saved too."""
    jupytext = pytest.importorskip("jupytext", reason="the test extra installs jupytext")
    nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")
    for name, value in lesson_environment(tmp_path / "runs").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MINIGRAD_BACKEND", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = jupytext.read(lesson)
    assert sum(cell.cell_type == "code" for cell in notebook.cells) >= 2, f"{lesson.name} has no cells"
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(lesson.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert printed.strip(), f"{lesson.name} printed nothing in the notebook"
    assert len(images) == len(PLOTS.get(lesson.stem, [])), (
        f"{lesson.name} showed {len(images)} plots inline, expected one per saved plot"
    )
    check_outputs(lesson, tmp_path / "runs", printed)


def test_gpu_lesson_code_path_runs_on_numpy(tmp_path):
    """Lesson 10's training and comparisons, run with NumPy standing in for CuPy."""
    result = run_lesson("10_training_on_the_gpu.py", "--backend", "numpy", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "final accuracy with BatchNorm differs" in result.stdout


def test_gpu_lesson_says_why_it_does_nothing_without_a_gpu(tmp_path):
    from minigrad.backend import cupy_unavailable_reason

    reason = cupy_unavailable_reason()
    if reason is None:
        pytest.skip("CuPy works here, so lesson 10 trains on the GPU (the lesson tests above run it)")
    result = run_lesson("10_training_on_the_gpu.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No GPU backend on this machine" in result.stdout and reason in result.stdout
    assert "final accuracy" not in result.stdout


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_uses_the_shared_scaffolding(lesson):
    """Cells, and the options, backend and output folder from minigrad.lesson, not a copy."""
    text = lesson.read_text()
    assert text.startswith("# %% [markdown]"), f"{lesson.name} should open with a markdown cell"
    assert text.count("# %%") >= 3, f"{lesson.name} should be split into # %% cells"
    assert "lesson.options(" in text, f"{lesson.name} should take its options from lesson.options"
    for copy in ("parse_args(", "matplotlib.use(", 'Path("runs")', "sys.exit("):
        assert copy not in text, f"{lesson.name} should not call {copy} itself (see minigrad/lesson.py)"


@pytest.mark.parametrize("where", ["elsewhere", "lessons"])
def test_outputs_go_to_the_repository_runs_folder_wherever_the_lesson_runs_from(tmp_path, where):
    environment = dict(os.environ)
    environment.pop("MINIGRAD_RUNS", None)
    cwd = tmp_path if where == "elsewhere" else ROOT / "lessons"
    result = subprocess.run([sys.executable, "-c", "from minigrad import lesson; print(lesson.runs_dir())"],
                            cwd=cwd, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == (ROOT / "runs").resolve()


def test_a_notebook_opened_in_lessons_writes_to_the_repository_runs_folder(monkeypatch):
    """A kernel started in lessons/, as Jupyter starts one for a notebook there, not lessons/runs."""
    nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")
    nbformat = pytest.importorskip("nbformat", reason="nbclient installs nbformat")
    monkeypatch.delenv("MINIGRAD_RUNS", raising=False)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from minigrad import lesson\nprint(lesson.runs_dir())")])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "lessons")}}).execute()
    printed = "".join(output.get("text", "") for output in notebook.cells[0].outputs)
    assert Path(printed.strip()) == (ROOT / "runs").resolve()


def test_quick_mode_comes_from_the_environment_in_a_notebook_and_options_take_defaults(tmp_path):
    """In a kernel, sys.argv holds the kernel's own arguments (-f connection.json)."""
    code = ("import sys, types; sys.modules['ipykernel'] = types.ModuleType('ipykernel'); "
            "sys.argv = ['ipykernel_launcher.py', '-f', 'kernel.json']; "
            "from minigrad import lesson; import json; o = lesson.options('x', lambda p: p.add_argument('--n', default=3)); "
            "print(json.dumps(vars(o)))")
    for quick, expected in (("1", True), ("", False)):
        environment = dict(os.environ, MINIGRAD_QUICK=quick)
        result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"quick": expected, "n": 3}


@pytest.fixture
def ends_if_it_hangs():
    """Worker pools can hang; past two minutes this ends the test run with every thread's
    traceback, instead of blocking CI."""
    import faulthandler

    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def test_parallel_runs_equal_serial_runs(tmp_path, ends_if_it_hangs):
    """Lesson 7's runs spread over worker processes give exactly the serial results."""
    from minigrad import lesson

    jobs = [dict(activation=activation, batch_norm=batch_norm, learning_rate=0.5, steps=30, seed=seed,
                 eval_every=10, log_path=tmp_path / f"{activation}-{batch_norm}-{seed}.csv")
            for activation in ("relu", "sigmoid") for batch_norm in (False, True) for seed in (0, 1)]
    serial = list(lesson.run_parallel(lesson.train_paper_mlp, jobs, workers=1))
    parallel = list(lesson.run_parallel(lesson.train_paper_mlp, jobs, workers=2))
    assert len(parallel) == len(jobs)
    for one, other in zip(serial, parallel):  # bit for bit (the step-0 loss is NaN in both)
        for field in ("step", "loss", "train_accuracy", "test_accuracy"):
            np.testing.assert_array_equal(getattr(one, field), getattr(other, field))
    assert len({tuple(h.loss) for h in serial}) == len(jobs), "the runs should differ from each other"


def test_a_job_that_raises_in_a_worker_reaches_the_caller(tmp_path, ends_if_it_hangs):
    """A failing run of lesson 7 ends the whole sweep with its own error, instead of hanging
    or being lost in a worker; the jobs before it still give their results."""
    from minigrad import lesson

    good = dict(activation="relu", batch_norm=False, learning_rate=0.5, steps=2, seed=0, eval_every=1,
                log_path=tmp_path / "good.csv")
    jobs = [good, dict(good, activation="nope", log_path=tmp_path / "bad.csv"), dict(good, seed=1)]
    results = lesson.run_parallel(lesson.train_paper_mlp, jobs, workers=2)
    assert next(results).step[-1] == 2
    with pytest.raises(ValueError, match="activation must be one of .*got 'nope'"):
        next(results)


def test_one_blas_thread_for_lesson_12_ranks():
    """lesson.one_blas_thread() leaves this process one BLAS thread (checked in a fresh
    process, so that the test run keeps its own threads)."""
    pytest.importorskip("threadpoolctl", reason="scikit-learn (the lessons extra) installs threadpoolctl")
    code = ("import threadpoolctl; from minigrad import lesson; ok = lesson.one_blas_thread(); "
            "print(ok, sorted({i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(None, 1) == ["True", "[1]\n"], result.stdout


def test_train_paper_mlp_takes_lesson_11_jobs(tmp_path):
    """Lesson 11's jobs: BatchNorm options (renorm) and non-i.i.d. batches pass through."""
    from minigrad import lesson

    job = dict(activation="relu", batch_norm=True, bn_momentum=0.99, learning_rate=0.1, steps=6, batch_size=4,
               classes_per_batch=2, seed=0, eval_every=3, log_path=tmp_path / "renorm.csv",
               bn_options=dict(renorm=True, renorm_clipping={"rmax": 3, "dmax": 5}))
    history = lesson.train_paper_mlp(job)
    assert history.step == [0, 3, 6] and not history.diverged
    assert read_run(tmp_path / "renorm.csv")["step"] == [0.0, 3.0, 6.0]
    plain = lesson.train_paper_mlp(dict(job, bn_options=None, log_path=None))
    assert plain.loss[1:] != history.loss[1:]

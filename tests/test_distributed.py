"""minigrad.distributed and BatchNorm(synchronized=True) on real MPI: tests/mpi_checks.py under
mpiexec -n 2 and -n 4, each job under a timeout, so that a hang fails the test instead of
blocking the suite. Without the distributed extra (mpi4py, and mpich's mpiexec) they skip and
say so; the test extra installs it, so CI runs them.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
import minigrad.distributed as dist
from conftest import CUPY_PROBLEM, SKIP_CUPY
from minigrad.runlog import read_run

ROOT = Path(__file__).parent.parent
CHECKS = Path(__file__).parent / "mpi_checks.py"

try:
    import mpi4py  # noqa: F401
    MPI_PROBLEM = None
except ImportError:
    MPI_PROBLEM = "mpi4py is not installed: pip install -e '.[distributed]'"
MPIEXEC = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
if MPI_PROBLEM is None and MPIEXEC is None:
    MPI_PROBLEM = "no mpiexec on PATH or beside this Python (the mpich wheel ships one)"
needs_mpi = pytest.mark.skipif(MPI_PROBLEM is not None, reason=f"no MPI here: {MPI_PROBLEM}")


def mpirun(ranks, *arguments, timeout=120, **variables):
    """mpiexec -n ranks python tests/mpi_checks.py arguments..., one BLAS thread per rank, with
    `variables` added to the environment."""
    environment = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                       **variables)
    return subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, str(CHECKS), *arguments],
                          capture_output=True, text=True, timeout=timeout, env=environment, cwd=ROOT)


def assert_every_rank_ok(result, ranks, check):
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for r in range(ranks):
        assert f"rank {r} ok: {check}" in output, output


@needs_mpi
@pytest.mark.parametrize("split", ["15,15,15,15", "10,20,15,15", "20,20,20,0"],
                         ids=["even", "uneven", "a-rank-without-rows"])
def test_synchronized_batchnorm_on_4_ranks_equals_one_process_on_the_whole_batch(split):
    assert_every_rank_ok(mpirun(4, "batchnorm", split), 4, f"batchnorm {split}")


@needs_mpi
def test_synchronized_batchnorm_on_2_ranks():
    assert_every_rank_ok(mpirun(2, "batchnorm", "25,35"), 2, "batchnorm 25,35")


@needs_mpi
@pytest.mark.parametrize("check", ["renorm", "unbiased", "training", "broadcast", "mismatch", "create_graph",
                                   "shard", "refusals", "in_place"])
def test_on_2_ranks(check):
    assert_every_rank_ok(mpirun(2, check), 2, check)


@needs_mpi
@pytest.mark.skipif(SKIP_CUPY, reason=f"no GPU on this machine, so no CuPy backend ({CUPY_PROBLEM})")
def test_synchronized_batchnorm_on_cupy_goes_through_host_memory():
    assert_every_rank_ok(mpirun(2, "batchnorm", "25,35", MINIGRAD_BACKEND="cupy"), 2, "batchnorm 25,35")


@needs_mpi
def test_an_exception_on_one_rank_ends_the_whole_job_within_seconds():
    # Rank 0 waits in a barrier rank 1 never reaches: without init()'s excepthook calling
    # MPI_Abort this job would hang until the timeout.
    result = mpirun(2, "crash", timeout=30)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "rank 1 fails on purpose" in output and "MPI_Abort" in output, output
    assert "passed a barrier" not in output


@needs_mpi
def test_without_mpiexec_init_gives_a_world_of_one():
    code = ("import minigrad.distributed as d; n = d.init(); "
            "print(n, d.rank(), d.world_size(), d.communicator() is None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["1", "0", "1", "True"], result.stdout + result.stderr


LESSON_12 = ROOT / "lessons" / "12_synchronized_batchnorm.py"
LESSON_12_POINT = "The point: under data parallelism BatchNorm's batch is whatever each rank holds."


@needs_mpi
def test_lesson_12_runs_on_4_ranks_in_quick_mode(tmp_path):
    """The lesson as its text says to launch it (mpiexec -n 4), in quick mode, outputs under
    tmp_path: its own assertions hold on rank 0, rank 0 alone prints its point, and it writes
    its plot and one run log per run."""
    from test_lessons import PNG, lesson_environment

    runs = tmp_path / "runs"
    result = subprocess.run([MPIEXEC, "-n", "4", sys.executable, str(LESSON_12), "--quick"], capture_output=True,
                            text=True, timeout=240, env=lesson_environment(runs), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert result.stdout.count(LESSON_12_POINT) == 1, output  # rank 0 only
    plot = runs / "lesson12_synchronized.png"
    assert plot.is_file() and plot.read_bytes()[:8] == PNG and plot.stat().st_size > 10_000, output
    assert str(plot.resolve()) in result.stdout, "the lesson should print where its plot went"
    logs = sorted((runs / "lesson12").glob("*.csv"))
    assert [log.name for log in logs] == ["one-process-seed0.csv", "per-rank-seed0.csv", "synchronized-seed0.csv"]
    for log in logs:
        assert read_run(log)["step"][0] == 0.0


def test_lesson_12_without_mpiexec_says_how_to_launch_it_and_writes_nothing(tmp_path):
    from test_lessons import run_lesson

    result = run_lesson(LESSON_12.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mpiexec -n 4 python lessons/12_synchronized_batchnorm.py" in result.stdout
    assert "Synchronized BatchNorm" in result.stdout and LESSON_12_POINT not in result.stdout
    assert not (tmp_path / "runs").exists(), "a world of one trains nothing and writes nothing"


def test_import_minigrad_never_imports_mpi4py():
    code = "import sys, minigrad, minigrad.distributed; print('mpi4py' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stdout + result.stderr


def test_in_a_world_of_one_the_helpers_change_nothing():
    assert dist.world_size() == 1 and dist.rank() == 0
    x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    xs, ys = dist.shard(x, y)
    assert (xs == x).all() and (ys == y).all() and dist.rank_rows(5) == slice(0, 5)
    weight = mg.Tensor(np.ones(3), requires_grad=True)
    weight.grad = mg.Tensor(np.full(3, 2.0))
    dist.average_gradients([weight])
    assert (weight.grad.numpy() == 2.0).all()
    layers = [mg.nn.BatchNorm(synchronized=flag, dtype="float64") for flag in (False, True)]
    x = np.random.default_rng(0).normal(size=(6, 3))
    outputs = [layer(mg.Tensor(x), training=True).numpy() for layer in layers]
    assert (outputs[0] == outputs[1]).all()


def test_shard_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match="same length, got \\[3, 4\\]"):
        dist.shard(np.zeros(3), np.zeros(4))


@needs_mpi
def test_the_distributed_benchmark_runs_on_2_ranks_and_alone():
    # It measures nothing here (speed is never asserted in tests): it must run and report.
    script = ROOT / "scripts" / "benchmark_distributed.py"
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    alone = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True,
                           timeout=120, env=environment)
    assert alone.returncode == 0 and "one process, batch 256" in alone.stdout, alone.stdout + alone.stderr
    ranks = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script), "--quick"], capture_output=True,
                           text=True, timeout=120, env=environment)
    assert ranks.returncode == 0, ranks.stdout + ranks.stderr
    for heading in ("1. collectives", "synchronized / not", "3. average_gradients", "data-parallel / one process"):
        assert heading in ranks.stdout, ranks.stdout

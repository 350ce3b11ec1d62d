"""What every lesson shares: its options, where its outputs go, and how a figure is kept.

    from minigrad import lesson
    options = lesson.options("Lesson 7: training with and without BatchNorm")
    QUICK = options.quick                  # --quick, or MINIGRAD_QUICK=1
    plt = lesson.pyplot()                  # Agg when run as a script, inline in a notebook
    RUNS = lesson.runs_dir()               # the repository's runs/, wherever the lesson runs from
    path = lesson.keep(figure, "lesson07_test_accuracy.png")   # saved there, and shown in a notebook

A lesson runs three ways with no change: as a script (headless: plots are written to files),
as a notebook (plots inline and written too), and in quick mode in both. In a notebook the
kernel's own command line (`-f kernel.json`) is not the lesson's, so options take their
defaults there and quick mode comes from MINIGRAD_QUICK=1 alone.

MINIGRAD_RUNS=folder puts the outputs somewhere else (the tests use it). `run_parallel`
spreads independent training runs over the machine's cores; `one_blas_thread` keeps processes
that share the cores (lesson 12's MPI ranks) from oversubscribing them with BLAS threads.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

# The environment variables that cap the BLAS libraries NumPy may link (OpenBLAS, MKL, BLIS,
# Apple's Accelerate) and OpenMP. A worker reads them when it imports NumPy.
_ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                      "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}


def in_notebook() -> bool:
    """True inside a Jupyter kernel (a notebook, or VS Code's interactive window)."""
    return "ipykernel" in sys.modules


def options(description: str, add: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The lesson's options: --quick (or MINIGRAD_QUICK=1), plus any that `add` defines.

    As a script, they come from the command line. In a notebook, every option takes its
    default (the kernel's arguments are not the lesson's), and quick mode is MINIGRAD_QUICK=1.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run (also MINIGRAD_QUICK=1)")
    if add is not None:
        add(parser)
    parsed = parser.parse_args([] if in_notebook() else None)
    parsed.quick = parsed.quick or os.environ.get("MINIGRAD_QUICK") == "1"
    return parsed


def pyplot() -> Any:
    """matplotlib.pyplot, on the Agg backend (files, no windows) unless in a notebook."""
    import matplotlib

    if not in_notebook():
        matplotlib.use("Agg")  # headless: write files, open no windows
    import matplotlib.pyplot as plt

    return plt


def runs_dir(*parts: str) -> Path:
    """The folder for outputs (created): MINIGRAD_RUNS if set, else the repository's runs/.

    The repository is the one minigrad is installed from (pip install -e .), so a notebook
    opened in lessons/ writes to the same runs/ as a script run from the top. An install
    outside a checkout falls back to runs/ in the working directory.
    """
    if os.environ.get("MINIGRAD_RUNS"):
        root = Path(os.environ["MINIGRAD_RUNS"])
    else:
        checkout = Path(__file__).resolve().parent.parent
        root = checkout / "runs" if (checkout / "lessons").is_dir() else Path.cwd() / "runs"
    folder = root.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def keep(figure: Any, filename: str, dpi: int = 110) -> Path:
    """Save `figure` as runs/filename and show it inline when in a notebook; returns the path.

    The figure is closed afterwards, so a long lesson does not pile up open figures (and a
    notebook does not show it twice).
    """
    path = runs_dir() / filename
    figure.savefig(path, dpi=dpi)
    if in_notebook():
        from IPython.display import display

        display(figure)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path.resolve()


def one_blas_thread() -> bool:
    """Limit NumPy's BLAS library (OpenBLAS, MKL, ...) and OpenMP to one thread in this process,
    from now on; returns False, changing nothing, where threadpoolctl is missing.

    For processes that share the cores, such as lesson 12's MPI ranks (run_parallel's workers
    get the same limit from their environment instead). NumPy's default is one BLAS thread
    per core in every process, so 4 ranks on 2 cores would run 8 threads, and an idle BLAS
    thread may spin for a while after each product: the threads take the cores from the other
    ranks, which wait for each other at every collective (lesson 12 ran 1.6x as long). This works at run time, after NumPy is
    imported, through threadpoolctl, which scikit-learn (the lessons extra) installs.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(limits=1)
    return True


def run_parallel(function: Callable[[Any], Any], jobs: Iterable[Any], workers: int | None = None) -> Iterator[Any]:
    """function(job) for each job, in order, spread over `workers` processes (default: one per
    core this process may use).

    Each worker uses one BLAS thread. NumPy's default, one thread per core in every process,
    would put workers x cores threads on the cores, and they slow each other down. The results
    are those of a serial run: every job seeds its own randomness. `function` must be
    importable (defined in a module, not in a notebook): workers start fresh ("spawn"), the
    one way that works the same on Linux, macOS and Windows, and inside a notebook. The
    caller's script is hidden from the workers, so a lesson run as `python lessons/07_....py`
    or as a notebook is not re-run in each of them; a script run with `python -m` is found
    by its module name instead and must guard its top level with `if __name__ == "__main__"`.
    workers=1 runs in this process, with no pool. If a job raises, the error reaches the
    caller and the pool shuts down, its queued jobs cancelled.
    """
    jobs = list(jobs)
    workers = min(len(jobs), _usable_cores()) if workers is None else workers
    if workers <= 1:
        yield from map(function, jobs)
        return
    saved = {name: os.environ.get(name) for name in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)  # a worker inherits the environment of the moment it starts
    # A spawned worker re-runs the parent's main script (as __mp_main__) unless the script
    # guards itself with `if __name__ == "__main__"`, which a lesson, a notebook in cells,
    # cannot. Its file name is how the worker finds it, so it is hidden while workers start.
    main = sys.modules["__main__"]
    main_file = main.__dict__.pop("__file__", None)
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
    try:
        results = pool.map(function, jobs)  # submits every job now, which starts the workers
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    finally:
        if main_file is not None:
            main.__file__ = main_file
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        yield from results
    finally:  # also when a job raised, or the caller stopped early: no worker is left behind
        pool.shutdown(cancel_futures=True)


def _usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS tells), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def train_paper_mlp(job: dict) -> Any:
    """One training run of lesson 7, for run_parallel: the paper's network on the digits.

    job holds paper_mlp's arguments (activation, batch_norm, and any of bn_momentum,
    kernel_initializer, bn_options) and fit's (learning_rate, steps, seed, eval_every,
    log_path, batch_size, classes_per_batch, ...). Returns fit's History.
    """
    from minigrad.training import fit, paper_mlp

    job = dict(job)
    model = paper_mlp(job.pop("activation"), job.pop("batch_norm"),
                      **{key: job.pop(key) for key in ("bn_momentum", "kernel_initializer", "bn_options")
                         if key in job})
    return fit(model, _digits(), **job)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple:
    """The digits split every lesson trains on, loaded once per process."""
    from minigrad.data import load_digits

    return load_digits(seed=0)

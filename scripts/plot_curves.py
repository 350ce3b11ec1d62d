"""Plot loss and accuracy against steps for one or more training runs.

    python scripts/plot_curves.py runs/bn-relu-lr0.5.csv runs/plain-relu-lr0.5.csv -o curves.png

Each RUN.csv is a log the lessons write (minigrad.runlog); the legend shows each file's name.
Runs headless (matplotlib's Agg backend) and prints where the plot went.
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")  # headless: write files, open no windows
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minigrad.runlog import read_run  # noqa: E402


def plot_runs(paths: list[str], output: str) -> None:
    """Loss (left) and test accuracy (right) against steps, one line per run."""
    runs = [(os.path.splitext(os.path.basename(p))[0], read_run(p)) for p in paths]  # errors first
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs:
        loss_axes.plot(run["step"], run["loss"], label=name)
        accuracy_axes.plot(run["step"], run["test_accuracy"], label=name)
    loss_axes.set(xlabel="step", ylabel="training loss", yscale="log", title="Loss")
    accuracy_axes.set(xlabel="step", ylabel="test accuracy", title="Test accuracy")
    accuracy_axes.legend(fontsize="small")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run logs (CSV) written by the lessons")
    parser.add_argument("-o", "--output", default="runs/curves.png", help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        plot_runs(args.runs, args.output)
    except (OSError, ValueError) as error:
        print(f"plot_curves: {error}", file=sys.stderr)
        return 2
    print(f"plot written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

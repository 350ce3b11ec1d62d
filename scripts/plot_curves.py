"""Plot loss and accuracy against steps for one or more training runs.

    python scripts/plot_curves.py runs/bn-relu-lr0.5.csv runs/plain-relu-lr0.5.csv -o curves.png

Each RUN.csv is a log the lessons write (minigrad.runlog); the legend shows each file's name.
Runs headless (matplotlib's Agg backend) and prints where the plot went.

The output must end in .png (any case): given `-o curves`, matplotlib would quietly write
curves.png while the script reported `curves`, and `-o curves.pdf` would write a PDF to a
flag documented as "the PNG to write". Such a name is refused (exit code 2) before anything
is read or written, so the path printed on success is always the file that exists.
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


def check_output(output: str) -> None:
    """Refuse an output path that matplotlib would not write as exactly that PNG file."""
    suffix = os.path.splitext(output)[1]
    if suffix.lower() == ".png":
        return
    hint = f"; did you mean {output + '.png'!r}?" if not suffix else ""
    raise ValueError(f"the output must be a .png file, got {output!r}{hint}")


def plot_runs(paths: list[str], output: str) -> None:
    """Loss (left) and test accuracy (right) against steps, one line per run."""
    check_output(output)  # before the runs, so that a bad name costs no reading
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
    parser.add_argument("-o", "--output", default="runs/curves.png",
                        help="the PNG to write (must end in .png)")
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

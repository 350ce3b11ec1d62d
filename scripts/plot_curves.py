r"""Plot loss and accuracy against steps for one or more training runs.

    python scripts/plot_curves.py runs/bn-relu-lr0.5.csv runs/plain-relu-lr0.5.csv -o curves.png
    python scripts/plot_curves.py runs/lesson07/*.csv --group --target 0.95 -o runs/lesson07_curves.png

Each RUN.csv is a log the lessons write (minigrad.runlog). Without --group, every run is one
line and the legend shows each file's name; given more than 10 runs, the script suggests
--group on stderr. Runs headless (matplotlib's Agg backend) and prints where the plot went.

Options:
  --group, --group-seeds   one line per configuration instead of one per run. Runs whose file
                           names are equal once the --group-by pattern is removed from them
                           (relu-bn-lr0.5-seed0 and relu-bn-lr0.5-seed2 both become
                           relu-bn-lr0.5) form one configuration. Its line is the mean over
                           its runs, its shaded band spans their minimum to their maximum, and
                           its legend entry counts them: "relu-bn-lr0.5 (3 seeds)".
  --group-by REGEX         the part of a file name that tells the runs of one configuration
                           apart, as a Python regular expression (default: -seed\d+). Giving
                           it implies --group. Write one that starts with "-" with an equals
                           sign, as argparse would take it for an option: --group-by='-run\d+'.
  --target ACCURACY        a dotted horizontal line at this test accuracy (in (0, 1]), e.g. 0.95,
                           with its own legend entry ("95% target").
  -o, --output PATH        the PNG to write (default runs/curves.png).

Runs of one configuration need not be equally long: fit (minigrad.training) stops a run whose
loss is no longer finite, so a diverged seed has fewer records. At each step the mean and the
band are taken over the runs that recorded that step: a run that stopped early drops out after
its last record, so from there the line is over fewer runs, and the legend entry says how many
stopped early ("relu-plain-lr1.0 (3 seeds, 1 stopped early: x)"); an x marks each such run's
last record, where the line may jump because the runs it averages change. A value that is not
finite (the loss at step 0, which has no batches behind it, or the loss that stopped a diverged
run) makes that step's mean not finite too, which leaves a gap rather than hiding the divergence.

The output must end in .png (any case): given `-o curves`, matplotlib would quietly write
curves.png while the script reported `curves`, and `-o curves.pdf` would write a PDF to a
flag documented as "the PNG to write". Such a name, or a --group-by pattern that is not a
regular expression, is refused (exit code 2) before anything is read or written, so the path
printed on success is always the file that exists.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")  # headless: write files, open no windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minigrad.runlog import read_run  # noqa: E402

DEFAULT_GROUP_BY = r"-seed\d+"
MANY_RUNS = 10  # above this many ungrouped lines, the legend stops being readable
# Ten colours, then the same ten dashed, and so on: 40 lines before any two look alike.
COLOURS = plt.get_cmap("tab10").colors
LINESTYLES = ["-", "--", "-.", (0, (3, 1, 1, 1, 1, 1))]
LEGEND_ROWS = 20  # entries per legend column


def check_output(output: str) -> None:
    """Refuse an output path that matplotlib would not write as exactly that PNG file."""
    suffix = os.path.splitext(output)[1]
    if suffix.lower() == ".png":
        return
    hint = f"; did you mean {output + '.png'!r}?" if not suffix else ""
    raise ValueError(f"the output must be a .png file, got {output!r}{hint}")


def compile_group_by(pattern: str) -> re.Pattern:
    """The --group-by pattern, compiled; one that is not a regular expression is named."""
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"--group-by {pattern!r} is not a valid regular expression: {error}") from None


def run_name(path: str) -> str:
    """A run's name: its file name without .csv."""
    return os.path.splitext(os.path.basename(path))[0]


def group_runs(paths: list[str], pattern: str = DEFAULT_GROUP_BY) -> dict[str, list[dict[str, list[float]]]]:
    """Read the runs and group them by file name with `pattern` removed, in the order given."""
    strip = compile_group_by(pattern)
    groups: dict[str, list[dict[str, list[float]]]] = {}
    for path in paths:
        groups.setdefault(strip.sub("", run_name(path)), []).append(read_run(path))
    return groups


def aggregate(runs: list[dict[str, list[float]]], column: str) -> tuple[np.ndarray, ...]:
    """(steps, mean, min, max) of one column over runs, at each step over the runs that recorded it."""
    by_step = [dict(zip(run["step"], run[column])) for run in runs]
    steps = sorted(set().union(*by_step))
    present = [[values[step] for values in by_step if step in values] for step in steps]
    return (np.array(steps), np.array([np.mean(v) for v in present]),
            np.array([np.min(v) for v in present]), np.array([np.max(v) for v in present]))


def stopped_early(runs: list[dict[str, list[float]]]) -> list[dict[str, list[float]]]:
    """The runs whose last record comes before the group's last step (a diverged run, say)."""
    last_step = max((run["step"][-1] for run in runs if run["step"]), default=0.0)
    return [run for run in runs if run["step"] and run["step"][-1] < last_step]


def group_label(name: str, runs: list[dict[str, list[float]]], unit: str = "seed") -> str:
    """A configuration's legend entry: its name, how many runs, and how many stopped early."""
    label = f"{name} ({len(runs)} {unit}{'s' if len(runs) != 1 else ''}"
    stopped = len(stopped_early(runs))
    return label + (f", {stopped} stopped early: x)" if stopped else ")")


def plot_runs(paths: list[str], output: str, *, group_by: str | None = None,
              target: float | None = None) -> plt.Figure:
    """Loss (left) and test accuracy (right) against steps, one line per run or per group.

    group_by: a regular expression; when given, runs whose names match once it is removed are
    drawn as one mean line with a min-max band (see the module's docstring). target: a test
    accuracy to draw as a dotted line. Returns the (closed) figure, whose one legend is
    figure.legends[0].
    """
    check_output(output)  # before the runs, so that a bad name costs no reading
    if group_by is not None:
        unit = "seed" if group_by == DEFAULT_GROUP_BY else "run"
        series = [(group_label(name, runs, unit), runs) for name, runs in group_runs(paths, group_by).items()]
    else:
        # each run a group of one, whose mean is the run itself; every file read before drawing
        series = [(run_name(p), [read_run(p)]) for p in paths]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
    for index, (label, runs) in enumerate(series):
        style = dict(color=COLOURS[index % len(COLOURS)],
                     linestyle=LINESTYLES[index // len(COLOURS) % len(LINESTYLES)])
        for axes, column in ((loss_axes, "loss"), (accuracy_axes, "test_accuracy")):
            steps, mean, low, high = aggregate(runs, column)
            axes.plot(steps, mean, label=label, **style)
            if group_by is not None:
                axes.fill_between(steps, low, high, color=style["color"], alpha=0.2, linewidth=0)
                for run in stopped_early(runs):  # where the line drops to fewer runs, and why
                    axes.plot(run["step"][-1], run[column][-1], "x", color=style["color"])
    if target is not None:
        accuracy_axes.axhline(target, color="grey", linestyle=":", linewidth=1.5, label=f"{target * 100:g}% target")
    loss_axes.set(xlabel="step", ylabel="training loss (log scale)", yscale="log", title="Loss")
    accuracy_axes.set(xlabel="step", ylabel="test accuracy", title="Test accuracy")
    if group_by is not None:
        figure.suptitle(f"line: mean over the {unit}s of each configuration; shaded band: min to max over "
                        f"the {unit}s\n(at each step, over the runs that recorded it)", fontsize="medium")
    # One legend for both panels: the configurations from the loss panel, the target from the other.
    handles, labels = loss_axes.get_legend_handles_labels()
    if target is not None:
        handles.append(accuracy_axes.get_lines()[-1])
        labels.append(accuracy_axes.get_lines()[-1].get_label())
    legend = figure.legend(handles, labels, loc="outside right upper", fontsize="small",
                           ncols=math.ceil(len(labels) / LEGEND_ROWS))
    # Widen (and if need be heighten) the figure by the legend's own size, so the panels keep theirs.
    legend_size = legend.get_window_extent(figure.canvas.get_renderer()).size / figure.dpi  # inches
    figure.set_size_inches(10 + legend_size[0], max(4.5, legend_size[1] + 0.6))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return figure


def accuracy_target(text: str) -> float:
    """argparse type for --target: a test accuracy in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a test accuracy in (0, 1], e.g. 0.95, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run logs (CSV) written by the lessons")
    parser.add_argument("-o", "--output", default="runs/curves.png",
                        help="the PNG to write (must end in .png)")
    parser.add_argument("--group", "--group-seeds", action="store_true",
                        help="one mean line and min-max band per configuration (runs differing only in --group-by)")
    parser.add_argument("--group-by", metavar="REGEX",
                        help=f"the part of a file name that differs between runs of one configuration "
                             f"(default {DEFAULT_GROUP_BY}); implies --group; one that starts with - "
                             f"needs an equals sign: --group-by='-run\\d+'")
    parser.add_argument("--target", type=accuracy_target, metavar="ACCURACY",
                        help="draw a dotted line at this test accuracy, e.g. 0.95")
    args = parser.parse_args(argv)
    group_by = args.group_by if args.group_by is not None else DEFAULT_GROUP_BY if args.group else None
    if group_by is None and len(args.runs) > MANY_RUNS:
        print(f"plot_curves: {len(args.runs)} runs make {len(args.runs)} lines; --group draws one line per "
              "configuration (mean over its seeds, with a min-max band)", file=sys.stderr)
    try:
        plot_runs(args.runs, args.output, group_by=group_by, target=args.target)
    except (OSError, ValueError) as error:
        print(f"plot_curves: {error}", file=sys.stderr)
        return 2
    print(f"plot written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""scripts/gradcheck.py: every row passes today, and a 1% error in any function it checks fails
the row that names that function's implementation."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import minigrad as mg
from minigrad.ops import batch_norm as reference, batch_norm_fast as fast, conv as conv_ops

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gradcheck.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gradcheck_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def failing_rows(output):
    """(label, what) of every FAIL row of the printed table."""
    rows = [re.split(r"\s{2,}", line) for line in output.splitlines()]
    return [(row[0], row[1]) for row in rows if row[-1] == "FAIL"]


def test_every_row_passes_and_is_labelled():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for label in ["Eq. 1", "Eq. 2", "Eq. 3a", "Eq. 3b", "Eq. 4", "Eq. 5", "Eq. 6", "scale and shift",
                  "composite", "closed form", "fast kernels", "inference", "Dense", "ReLU",
                  "softmax cross-entropy", "SGD", "renorm", "masked statistics",
                  "track_running_stats=False inference", "Conv2D", "BatchNorm on images"]:
        assert f"\n{label} " in result.stdout, label
    assert "\nEq. 3 " not in result.stdout, "the two Eq. 3 are told apart as Eq. 3a and Eq. 3b"
    assert "FAIL" not in result.stdout and "73 of 73 rows pass" in result.stdout


def off_by_one_percent(value):
    return value * 1.01


def sign_flipped(value):
    return -value


def doubled(value):
    return value * 2


# (module, function, which output (None: the only one), the change, the label of a row that must fail)
MUTATIONS = [
    (reference, "batch_moments", 0, off_by_one_percent, "Eq. 2"),
    (reference, "batch_moments", 2, off_by_one_percent, "Eq. 3a"),
    (reference, "normalize", 0, off_by_one_percent, "Eq. 1"),
    (reference, "normalize", 1, off_by_one_percent, "Eq. 1"),
    (reference, "scale_and_shift", None, off_by_one_percent, "scale and shift"),
    (reference, "batch_norm_inference", None, off_by_one_percent, "inference"),
    (reference, "population_statistics", 0, off_by_one_percent, "Eq. 3b"),
    (reference, "population_statistics", 1, off_by_one_percent, "Eq. 4"),
    (reference, "unbiased_variance", None, off_by_one_percent, "Eq. 4"),
    (reference, "cumulative_momentum", None, off_by_one_percent, "Eq. 3b"),
    (reference, "update_moving_statistics", 0, off_by_one_percent, "Eq. 5"),
    (reference, "update_moving_statistics", 1, off_by_one_percent, "Eq. 6"),
    (reference, "closed_form_backward", 0, off_by_one_percent, "closed form"),
    (reference, "closed_form_backward", 1, off_by_one_percent, "closed form"),
    (reference, "closed_form_backward", 1, sign_flipped, "closed form"),
    (reference, "closed_form_backward", 2, off_by_one_percent, "closed form"),
    (reference, "closed_form_backward", 2, doubled, "closed form"),
    (fast, "fast_forward", 0, off_by_one_percent, "fast kernels"),
    (fast, "fast_forward", 2, off_by_one_percent, "fast kernels"),
    (fast, "fast_forward", 3, off_by_one_percent, "fast kernels"),
    (fast, "fast_backward", 0, off_by_one_percent, "fast kernels"),
    (fast, "fast_backward", 1, off_by_one_percent, "fast kernels"),
    (fast, "fast_backward", 1, sign_flipped, "fast kernels"),
    (fast, "fast_backward", 2, off_by_one_percent, "fast kernels"),
    (fast, "fast_backward", 2, doubled, "fast kernels"),
    (fast, "channel_sum", None, off_by_one_percent, "fast kernels"),
    (fast, "shift_and_scale", None, off_by_one_percent, "fast kernels"),
    (fast, "input_gradient", None, off_by_one_percent, "fast kernels"),
    # create_graph's path: the second-derivative rows alone would pass an error here, since
    # they compare these derivatives' own derivatives with finite differences of them.
    (reference.BatchNormFunction, "backward_in_graph", 0, off_by_one_percent, "closed form"),
    (reference.BatchNormFunction, "backward_in_graph", 1, off_by_one_percent, "closed form"),
    (reference.BatchNormFunction, "backward_in_graph", 2, doubled, "closed form"),
    (reference, "renorm_correction", 0, off_by_one_percent, "renorm"),
    (reference, "renorm_correction", 1, off_by_one_percent, "renorm"),
    (reference, "renorm_transform", None, off_by_one_percent, "renorm"),
    *[(reference, "update_renorm_statistics", i, off_by_one_percent, "renorm") for i in range(5)],
    *[(reference, "channel_sums", i, off_by_one_percent, "masked statistics") for i in range(3)],
    (reference, "combine_moments", 0, off_by_one_percent, "masked statistics"),
    (reference, "combine_moments", 1, off_by_one_percent, "masked statistics"),
    (reference, "masked_batch_norm", 0, off_by_one_percent, "masked statistics"),
    (conv_ops, "conv2d", None, off_by_one_percent, "Conv2D"),
    (conv_ops.Conv2DKernelGrad, "forward", None, off_by_one_percent, "Conv2D"),
    (conv_ops.Conv2DInputGrad, "forward", None, off_by_one_percent, "Conv2D"),
]


def with_error(original, output, change):
    """original, with `change` applied to one of its outputs."""

    def wrong(*args, **kwargs):
        result = original(*args, **kwargs)
        if output is None:
            return change(result)
        return tuple(change(r) if i == output else r for i, r in enumerate(result))

    return wrong


def test_unpatched_in_process_the_script_returns_0(capsys):
    assert load_script().main() == 0
    assert failing_rows(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    "module, name, output, change, label", MUTATIONS,
    ids=[f"{name}[{output}]-{change.__name__}" for _, name, output, change, _ in MUTATIONS],
)
def test_an_error_in_any_checked_function_fails_the_row_that_names_it(monkeypatch, capsys, module, name,
                                                                       output, change, label):
    script = load_script()
    monkeypatch.setattr(module, name, with_error(getattr(module, name), output, change))
    assert script.main() == 1
    failed = failing_rows(capsys.readouterr().out)
    assert label in {row_label for row_label, _ in failed}, failed
    # An error in one implementation shows on its own rows, not on the others'.
    others = {"fast kernels": {"closed form", "composite"},
              "closed form": {"fast kernels", "composite"}}.get(label, set())
    assert not [row for row in failed if row[0] in others], failed


# ---- A backward that counts m from the first axis only ----------------------------------------
# Right on a (batch, features) input, wrong on (N, C, H, W), where m = N * H * W: the script's
# 4-D gradient rows must catch it.

def fast_backward_first_axis_m(grad, centred, inv_std, gamma, feature_axis, out=None):
    """fast_backward with m = g3.shape[0]: the before-axis only, the after-axis forgotten."""
    g3 = fast.three_axes(grad, feature_axis)
    m = g3.shape[0]
    sum_g, sum_g_centred = fast.channel_sum(g3), fast.channel_sum(g3, centred)
    k = inv_std if gamma is None else gamma.reshape(inv_std.shape) * inv_std
    d_x = fast.input_gradient(g3, centred, k, sum_g / m, inv_std * inv_std * sum_g_centred / m, out)
    return d_x.reshape(grad.shape), sum_g_centred * inv_std, sum_g


def patch_fast_backward(monkeypatch):
    monkeypatch.setattr(fast, "fast_backward", fast_backward_first_axis_m)


def patch_closed_form_backward(monkeypatch):
    """closed_form_backward counts m = math.prod of the reduced axes' sizes (its only use of
    math.prod): make that product see the first axis only."""
    monkeypatch.setattr(reference, "math", SimpleNamespace(prod=lambda sizes: next(iter(sizes))))


@pytest.mark.parametrize("patch, label", [(patch_fast_backward, "fast kernels"),
                                          (patch_closed_form_backward, "closed form")],
                         ids=["fast_backward", "closed_form_backward"])
def test_a_backward_that_counts_m_from_one_axis_fails_on_the_4d_rows(monkeypatch, capsys, patch, label):
    script = load_script()
    patch(monkeypatch)
    assert script.main() == 1
    failed = failing_rows(capsys.readouterr().out)
    assert failed and all(row_label == label for row_label, _ in failed), failed
    assert [what for _, what in failed if "6x3" in what] == [], "right in 2-D, so its 2-D rows pass"
    assert [what for _, what in failed if "4x3x2x2" in what], failed


# ---- The shortcut that breaks second derivatives ------------------------------------------------

class SavedConstantsClosedForm(reference.BatchNormClosedForm):
    """The closed form with the shortcut: backward reuses the forward's x - mu, 1/sqrt(var + eps)
    and x_hat as constant Tensors even under create_graph, so the engine sees no path from
    them back to x (tests/test_nn_gradients.py shows the same trap in a Function of one's own)."""

    def backward(self, grad):
        gamma, _ = self._gamma_beta(self.inputs[1:])
        saved = [mg.Tensor(a) for a in (self.centred, self.inv_std, self.x_hat)]
        return reference.closed_form_backward(grad, gamma, *saved, self.axes, self.has_gamma, self.has_beta)


def test_a_closed_form_with_saved_constants_fails_only_its_second_derivative_row(monkeypatch, capsys):
    script = load_script()
    monkeypatch.setattr(reference, "BatchNormClosedForm", SavedConstantsClosedForm)
    assert script.main() == 1
    assert failing_rows(capsys.readouterr().out) == [
        ("closed form", f"form='closed_form' second derivatives (x.shape={shape}, create_graph)")
        for shape in ("6x3", "4x3x2x2")]

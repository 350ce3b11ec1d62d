"""scripts/benchmark.py runs (quick mode), checks its references, and reports every section.

It measures nothing here: speed is never asserted in tests (see BENCHMARKS.md).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).parent.parent / "scripts" / "benchmark.py"
sys.path.insert(0, str(SCRIPT.parent))
import benchmark  # noqa: E402


def test_quick_run_reports_every_section():
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for heading in ("1. BatchNorm forward + backward", "2. one SGD step", "3. engine overhead", "4. memory",
                    "5. Conv2D forward + backward", "convnet step"):
        assert heading in result.stdout
    assert "minigrad / NumPy" in result.stdout  # the hand-written reference always runs on NumPy
    assert "objects found in reference cycles" in result.stdout


def test_the_numpy_reference_batchnorm_agrees_with_minigrad():
    for shape, axis in [((16, 8), -1), ((4, 3, 5, 5), 1)]:
        _, ours = benchmark.minigrad_bn(shape, axis)
        _, theirs = benchmark.numpy_bn(shape, axis)
        for a, b in zip(ours(), theirs()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_check_same_stops_on_a_disagreement(capsys):
    import pytest

    good = (np.zeros(3), np.zeros(3))
    benchmark.check_same("case", good, good, "NumPy")
    with pytest.raises(SystemExit, match="dl/dx differs from NumPy's"):
        benchmark.check_same("case", good, (np.zeros(3), np.ones(3)), "NumPy")


def test_the_pytorch_convolution_agrees_with_minigrad():
    import pytest

    pytest.importorskip("torch", reason="PyTorch is optional: the benchmark then times minigrad alone")
    import benchmark_conv

    for shape, filters in [((2, 5, 5, 3), 4)]:
        _, ours = benchmark_conv.minigrad_conv(shape, filters)
        _, theirs = benchmark_conv.torch_conv(shape, filters, "cpu")
        for a, b in zip(ours(), theirs()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)

"""scripts/gradcheck.py: every row passes today, and a broken backward makes it exit non-zero."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gradcheck.py"


def test_every_equation_row_passes_and_is_labelled():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for label in ["Eq. 1", "Eq. 2", "Eq. 3", "Eq. 4", "Eq. 5", "Eq. 6", "paper backward", "Dense",
                  "ReLU", "softmax cross-entropy", "SGD"]:
        assert f"\n{label}" in result.stdout, label
    assert "FAIL" not in result.stdout and "19 of 19 rows pass" in result.stdout


def test_a_backward_with_a_frozen_inverse_std_fails_the_script(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("gradcheck_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from minigrad.ops import batch_norm

    monkeypatch.setattr(batch_norm, "is_grad_enabled", lambda: False)  # second derivatives go wrong
    assert script.main() == 1
    assert "FAIL" in capsys.readouterr().out

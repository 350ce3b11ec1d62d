"""Every lesson runs, in quick mode, headless, and its own assertions hold."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).parent.parent / "lessons").glob("[0-9][0-9]_*.py"))


def test_there_are_lessons():
    assert LESSONS, "lessons/ should hold numbered lesson scripts"


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_in_quick_mode(lesson, tmp_path):
    environment = dict(os.environ, MPLBACKEND="Agg", MINIGRAD_QUICK="1")
    environment.pop("MINIGRAD_BACKEND", None)
    result = subprocess.run(
        [sys.executable, str(lesson), "--quick"], cwd=tmp_path, env=environment,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"{lesson.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{lesson.name} printed nothing"

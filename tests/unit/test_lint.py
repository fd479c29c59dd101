"""The code style is checked by the test suite, so CI enforces it. (The docstrings' examples run as
tests of their own: ``--doctest-modules`` in pyproject.toml.)"""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT

SOURCES = ["streams", "models", "sinks", "tests", "benchmarks"]


def test_ruff_check() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *SOURCES], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr

"""The code style is checked by the test suite, so CI enforces it."""

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


def test_doctests_pass() -> None:
    """The runnable examples in the docstrings are part of the documentation: they must stay true."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--doctest-modules",
            "-p",
            "no:cacheprovider",
            "streams",
            "sinks",
            "models",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]

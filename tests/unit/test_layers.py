"""The code's layers (pyproject.toml's ``[tool.importlinter]``): imports only downward, Faust only in the
worker, no Kafka client in the models, the domain or the processes; and the check catches a planted
upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = ("streams", "models", "sinks")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's check of the tree at ``root``, as ``lint-imports`` runs it there."""
    command = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports_command;"
        " sys.exit(lint_imports_command(['--no-cache']))",
    ]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def planted_copy(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the packages and pyproject.toml with ``line`` appended to ``module``'s file."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / (module.replace(".", "/") + ".py")
    target.write_text(target.read_text() + f"\n{line}\n")
    return tmp_path


def test_the_code_keeps_its_layers() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("streams.contracts.time", "import streams.domain.state  # noqa", "Layers"),
        ("models.features", "from streams.domain import rounds  # noqa", "Layers"),
        ("streams.domain.rounds", "from streams.worker import app  # noqa", "Layers"),
        ("streams.worker.guard", "import sinks.consumer  # noqa", "Layers"),
        ("streams.domain.triggers", "import aiokafka  # noqa", "Kafka client"),
        ("streams.api.server", "import faust  # noqa", "Only the worker imports Faust"),
    ],
)
def test_a_planted_upward_import_is_caught(tmp_path: Path, module: str, line: str, broken: str) -> None:
    result = lint_imports(planted_copy(tmp_path, module, line))
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout, result.stdout

"""What the tests share besides fixtures: the harness that talks to a broker, ClickHouse and workers
(:mod:`tests.support.harness`), fault injection (:mod:`tests.support.faults`), the scripted scenario and
the fuzzing families, the reliability record, the rogue worker and the Debian tools.

Tests import them as ``from tests.support.harness import produce``: the repository root is on
``sys.path`` because every folder under tests/ is a package (pytest puts the first folder above them,
the root, on the path), and a worker started by a test gets it through ``PYTHONPATH``."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root: where README.md, docs/ and the packages are."""

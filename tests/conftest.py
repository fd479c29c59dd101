from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.tools.broker import EmbeddedBroker, start_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh embedded Tansu broker per test (it starts in milliseconds), stopped by PID."""
    embedded = start_broker(log_path=tmp_path / "broker.log")
    try:
        yield embedded
    finally:
        embedded.stop()

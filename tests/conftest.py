"""The servers the tests start, as fixtures: an embedded Kafka broker, a ClickHouse server over HTTP,
and ``forewarn worker`` processes. Each is started on free ports in the test's own directory and
stopped by PID when the test ends, whatever happened in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.tools.broker import EmbeddedBroker, start_broker
from streams.tools.clickhouse_server import ClickHouseServer, start_clickhouse_server
from streams.tools.worker_launcher import WorkerProcess
from tests.support.harness import StartWorker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh embedded Tansu broker per test (it starts in milliseconds), stopped by PID."""
    embedded = start_broker(log_path=tmp_path / "broker.log")
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def clickhouse_server(tmp_path: Path) -> Iterator[ClickHouseServer]:
    """A real ClickHouse server over HTTP on a free port, its data in ``tmp_path/clickhouse-server``,
    stopped by PID (``.url`` is its DSN)."""
    server = start_clickhouse_server(tmp_path / "clickhouse-server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """Starts a ``forewarn worker``: ``start_worker(env)`` (its log ``tmp_path/worker.log``), or
    ``start_worker(env, log_path, **fields)`` with more :class:`WorkerProcess` fields; returns it once
    it is ready. Every worker started through it is stopped by PID when the test ends (SIGTERM, SIGKILL
    after a minute), also one that never became ready. A test that checks the exit code stops the worker
    itself (``assert worker.stop() == 0``): stopping again does nothing."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], log_path: Path | None = None, **fields: Any) -> WorkerProcess:
        worker = WorkerProcess(env, log_path or tmp_path / "worker.log", **fields)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()

"""The ClickHouse HTTP server fixture is a real server: it answers clickhouse-connect, keeps its data
across a restart, and is gone when stopped."""

from __future__ import annotations

import socket
from pathlib import Path

import clickhouse_connect
import pytest

from streams.tools.clickhouse_server import start_clickhouse_server

pytestmark = pytest.mark.integration


def test_server_serves_keeps_data_and_stops(tmp_path: Path) -> None:
    server = start_clickhouse_server(tmp_path / "ch")
    try:
        client = clickhouse_connect.get_client(dsn=server.url)
        assert client.query("SELECT version()").result_rows[0][0].startswith("26.")
        client.command("CREATE TABLE t (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
        client.insert("t", [[1, "a"], [2, "b"]], column_names=["id", "name"])
        client.close()
    finally:
        server.stop()
    assert server.process.poll() is not None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass

    again = start_clickhouse_server(tmp_path / "ch")
    try:
        client = clickhouse_connect.get_client(dsn=again.url)
        assert client.query("SELECT id, name FROM t ORDER BY id").result_rows == [(1, "a"), (2, "b")]
        client.close()
    finally:
        again.stop()

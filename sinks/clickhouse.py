"""ClickHouse through clickhouse-connect: one code path for the embedded engine and a real server.

``chdb:///path`` runs the ClickHouse engine in this process (the embedded default); ``http(s)://``
talks to a server. The schema lives in versioned SQL files beside this module
(``schema/NNNN_name.sql``), applied in order at start and recorded in ``schema_migrations``; each file
is written to be re-runnable, so a start that died half-way through a file simply applies it again.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import clickhouse_connect

SCHEMA_PACKAGE = "sinks.schema"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file's statements: comments dropped, split on the semicolons that end them."""
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        return [statement.strip() for statement in "\n".join(lines).split(";\n") if statement.strip(" \n;")]


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files(SCHEMA_PACKAGE).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


def connect(dsn: str) -> Any:
    """A clickhouse-connect client for ``chdb:///path`` or ``http(s)://user:password@host:port/database``."""
    return clickhouse_connect.get_client(dsn=dsn)


def batch_token(table: str, ranges: Sequence[tuple[int, int, int]]) -> str:
    """insert_deduplication_token of a batch: its table and (partition, first, last offset) ranges.

    >>> batch_token("events", [(0, 10, 19), (1, 5, 7)]) == batch_token("events", [(1, 5, 7), (0, 10, 19)])
    True
    """
    text = table + ";" + ";".join(f"{p}:{first}-{last}" for p, first, last in sorted(ranges))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ClickHouseStore:
    """The ClickHouse side of Forewarn: schema, idempotent batch inserts, reads."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.client = connect(dsn)

    def apply_schema(self) -> list[int]:
        """Apply the migrations not yet recorded; returns the versions applied now."""
        self.client.command(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String,"
            " applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY version"
        )
        done = {row[0] for row in self.client.query("SELECT version FROM schema_migrations").result_rows}
        applied = []
        for migration in migrations():
            if migration.version in done:
                continue
            for statement in migration.statements():
                self.client.command(statement)
            self.client.insert(
                "schema_migrations", [[migration.version, migration.name]], column_names=["version", "name"]
            )
            applied.append(migration.version)
        return applied

    def schema_version(self) -> int:
        rows = self.client.query("SELECT max(version) FROM schema_migrations").result_rows
        return int(rows[0][0]) if rows else 0

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], token: str) -> float:
        """Insert one batch; the same token again inserts nothing. Returns the seconds it took."""
        started = time.perf_counter()
        self.client.insert(
            table, rows, column_names=list(columns), settings={"insert_deduplication_token": token}
        )
        return time.perf_counter() - started

    def stored_offsets(self, table: str) -> dict[int, int]:
        """Highest Kafka offset stored in ``table``, per partition."""
        result = self.client.query(
            "SELECT kafka_partition, max(max_offset) FROM sink_offsets"
            " WHERE table_name = {table:String} GROUP BY kafka_partition",
            parameters={"table": table},
        )
        return {int(partition): int(offset) for partition, offset in result.result_rows}

    def recent_ids(self, table: str, id_sql: str, partition: int, from_offset: int) -> list[str]:
        """Ids of the rows stored from ``partition`` at or after ``from_offset``."""
        result = self.client.query(
            f"SELECT {id_sql} FROM {table}"
            " WHERE kafka_partition = {partition:UInt16} AND kafka_offset >= {offset:UInt64}",
            parameters={"partition": partition, "offset": max(0, from_offset)},
        )
        return [row[0] for row in result.result_rows]

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.client.query(sql, parameters=parameters or {}).result_rows

    def close(self) -> None:
        self.client.close()

"""ClickHouse through clickhouse-connect: one code path for the embedded engine and a real server.

``chdb:///path`` runs the ClickHouse engine in this process (the embedded default); ``http(s)://``
talks to a server. The schema lives in versioned SQL files beside this module
(``schema/NNNN_name.sql``), applied in order at start and recorded in ``schema_migrations``; each file
is written to be re-runnable, so a start that died half-way through a file simply applies it again.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import clickhouse_connect

from sinks.cluster import on_cluster

SCHEMA_PACKAGE = "sinks.schema"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# In system.tables.engine_full the TTL clause comes after the sorting key and before the settings.
_TTL_CLAUSE = re.compile(r"\bTTL (.+?)(?= SETTINGS |$)")

log = logging.getLogger(__name__)


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
        self._insert_contexts: dict[tuple[str, tuple[str, ...]], Any] = {}  # see insert

    def apply_schema(self, cluster: str = "") -> list[int]:
        """Apply the migrations not yet recorded; returns the versions applied now. With ``cluster``,
        their replicated variant on that cluster (:mod:`sinks.cluster`)."""

        def ddl(statement: str) -> str:
            return on_cluster(statement, cluster) if cluster else statement

        self.client.command(
            ddl(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String,"
                " applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY version"
            )
        )
        done = {row[0] for row in self.client.query("SELECT version FROM schema_migrations").result_rows}
        applied = []
        for migration in migrations():
            if migration.version in done:
                continue
            for statement in migration.statements():
                self.client.command(ddl(statement))
            self.client.insert(
                "schema_migrations", [[migration.version, migration.name]], column_names=["version", "name"]
            )
            applied.append(migration.version)
        return applied

    def schema_version(self) -> int:
        rows = self.client.query("SELECT max(version) FROM schema_migrations").result_rows
        return int(rows[0][0]) if rows else 0

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], token: str) -> float:
        """Insert one batch; the same token again inserts nothing. Returns the seconds it took.

        The rows go as columns (transposed by ``zip``, in C), which clickhouse-connect serializes
        faster than rows, through an insert context kept per table and columns, which spares a
        ``DESCRIBE TABLE`` per insert (benchmarks/sink.py). Not for concurrent inserts into one table.
        """
        started = time.perf_counter()
        if rows:
            key = (table, tuple(columns))
            context = self._insert_contexts.get(key)
            if context is None:
                context = self.client.create_insert_context(table, list(columns), column_oriented=True)
                self._insert_contexts[key] = context
            context.settings["insert_deduplication_token"] = token
            self.client.insert(data=list(zip(*rows, strict=True)), context=context)
        return time.perf_counter() - started

    def stored_offsets(self, table: str) -> dict[int, int]:
        """Highest Kafka offset stored in ``table``, per partition."""
        result = self.client.query(
            "SELECT kafka_partition, max(max_offset) FROM sink_offsets"
            " WHERE table_name = {table:String} GROUP BY kafka_partition",
            parameters={"table": table},
        )
        return {int(partition): int(offset) for partition, offset in result.result_rows}

    def recent_ids(
        self, table: str, id_sql: str, partition: int, from_offset: int, limit: int | None = None
    ) -> list[str]:
        """Ids of the rows stored from ``partition`` at or after ``from_offset``, in offset order; with
        ``limit``, the last ``limit`` of them only (a message may hold many rows: an envelope)."""
        result = self.client.query(
            f"SELECT {id_sql} FROM {table}"
            " WHERE kafka_partition = {partition:UInt16} AND kafka_offset >= {offset:UInt64}"
            " ORDER BY kafka_offset DESC" + ("" if limit is None else " LIMIT {limit:UInt64}"),
            parameters={"partition": partition, "offset": max(0, from_offset), "limit": limit or 0},
        )
        return [row[0] for row in reversed(result.result_rows)]

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.client.query(sql, parameters=parameters or {}).result_rows

    def tables(self) -> dict[str, str]:
        """The tables of the current database (views included) and their engines."""
        rows = self.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()")
        return dict(rows)

    def tables_with_column(self, column: str) -> list[str]:
        """The MergeTree tables (where rows are stored, not views) having a column named ``column``."""
        rows = self.query(
            "SELECT c.table FROM system.columns AS c"
            " INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table"
            " WHERE c.database = currentDatabase() AND c.name = {column:String}"
            " AND t.engine LIKE '%MergeTree' ORDER BY c.table",
            {"column": column},
        )
        return [row[0] for row in rows]

    def delete_where(self, table: str, condition: str, parameters: dict[str, Any]) -> int:
        """Delete the rows of ``table`` matching ``condition`` (bound with ``parameters``); returns how
        many there were. A lightweight ``DELETE`` (rows vanish from reads at once); where a table refuses
        it (projections), a mutation waited for on every replica (``mutations_sync = 2``)."""
        found = int(self.query(f"SELECT count() FROM {table} WHERE {condition}", parameters)[0][0])
        if not found:
            return 0
        try:
            self.client.command(f"DELETE FROM {table} WHERE {condition}", parameters=parameters)
        except Exception as error:  # the driver's error: the server refused this kind of delete
            log.info("lightweight delete refused on %s (%s); deleting by mutation", table, str(error)[:200])
            self.client.command(
                f"ALTER TABLE {table} DELETE WHERE {condition}",
                parameters=parameters,
                settings={"mutations_sync": 2},
            )
        return found

    def set_ttl(self, table: str, ttl: str) -> None:
        """``ALTER TABLE table MODIFY TTL ttl``; rows already expired go at once (the TTL is applied to
        the existing parts)."""
        self.client.command(f"ALTER TABLE {table} MODIFY TTL {ttl}")

    def table_ttl(self, table: str) -> str | None:
        """The table's TTL clause as ClickHouse shows it (``toDateTime(t) + toIntervalDay(30)``), or None."""
        rows = self.query(
            "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            {"t": table},
        )
        if not rows:
            raise ValueError(f"table {table!r} does not exist")
        match = _TTL_CLAUSE.search(rows[0][0])
        return match.group(1).strip() if match else None

    def close(self) -> None:
        self.client.close()

"""The schema's replicated variant for a ClickHouse cluster (sinks.cluster): every migration statement,
made ``ON CLUSTER`` with Replicated engines, is accepted by ClickHouse's own parser, and nothing of the
single-server form is left in it. (No Keeper runs here, so the variant is parsed, not created.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sinks.clickhouse import ClickHouseStore, migrations
from sinks.cluster import on_cluster
from streams.contracts.settings import Settings

CLUSTER = "forewarn_cluster"


def schema_statements() -> list[str]:
    return [statement for migration in migrations() for statement in migration.statements()]


def test_every_statement_of_the_replicated_variant_parses(tmp_path: Path) -> None:
    store = ClickHouseStore(f"chdb://{tmp_path / 'clickhouse'}")
    try:
        for statement in schema_statements():
            clustered = on_cluster(statement, CLUSTER)
            # formatQuery raises on a syntax error; its output is the statement as ClickHouse reads it.
            [(formatted,)] = store.query("SELECT formatQuery({ddl:String})", {"ddl": clustered})
            if statement.lstrip().upper().startswith("CREATE"):
                assert f"ON CLUSTER {CLUSTER}" in formatted, formatted
    finally:
        store.close()


def test_every_table_is_replicated_with_its_own_keeper_path() -> None:
    paths = []
    for statement in schema_statements():
        clustered = on_cluster(statement, CLUSTER)
        for engine in re.findall(r"ENGINE\s*=\s*(\w+)\(?([^)]*)", clustered):
            name, args = engine
            assert name.startswith("Replicated") and name.endswith("MergeTree"), clustered
            paths.append(args.split(",")[0].strip())
        assert "non_replicated_deduplication_window" not in clustered
    tables = [s for s in schema_statements() if re.match(r"\s*CREATE TABLE", s)]
    assert len(paths) == len(tables) and len(set(paths)) == len(paths), paths
    assert all(path.startswith("'/clickhouse/tables/{shard}/{database}/") for path in paths)


def test_engine_arguments_are_kept_after_the_keeper_path() -> None:
    clustered = on_cluster(
        "CREATE TABLE IF NOT EXISTS s (a UInt8, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY a", "c"
    )
    keeper = "'/clickhouse/tables/{shard}/{database}/s', '{replica}'"
    assert f"ReplicatedReplacingMergeTree({keeper}, v)" in clustered
    plain = on_cluster("CREATE TABLE IF NOT EXISTS p (a UInt8) ENGINE = SummingMergeTree ORDER BY a", "c")
    assert "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/p', '{replica}')" in plain
    assert on_cluster("ALTER TABLE t MODIFY TTL now()", "c") == "ALTER TABLE t MODIFY TTL now()"


def test_a_cluster_name_that_is_not_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="CLICKHOUSE_CLUSTER"):
        Settings.from_env({"FOREWARN_CLICKHOUSE_CLUSTER": "c' ; DROP TABLE events"})
    assert Settings.from_env({"FOREWARN_CLICKHOUSE_CLUSTER": "prod-1"}).clickhouse_cluster == "prod-1"

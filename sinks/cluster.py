"""The schema's replicated variant, for a ClickHouse cluster (``FOREWARN_CLICKHOUSE_CLUSTER``).

The versioned SQL files are written for one server. On a cluster the same files are applied through
:func:`on_cluster`, so there is one schema and no second copy to drift: every ``CREATE`` runs ``ON
CLUSTER``, so that each table and view exists on every node, and every MergeTree engine becomes its
Replicated twin with a Keeper path per shard and table, so that each replica holds every row and
survives the loss of the others. Insert deduplication then works across replicas (Keeper keeps the
tokens), hence ``replicated_deduplication_window`` in place of ``non_replicated_deduplication_window``.
Mutations (erasure deletes, TTL changes) on a Replicated table reach every replica without ``ON
CLUSTER``.

Sharding is not part of the variant: the sink's once-only bookkeeping (``sink_offsets``, row ids
reloaded on assignment) reads the node it writes to, so the cluster is one shard with as many replicas
as wanted, each worker pointed at any of them (docs/operations.md "ClickHouse cluster").

>>> ddl = on_cluster("CREATE TABLE t (a UInt8) ENGINE = ReplacingMergeTree(v) ORDER BY a", "prod")
>>> print(ddl.replace(" ENGINE", chr(10) + "ENGINE"))
CREATE TABLE t ON CLUSTER 'prod' (a UInt8)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/t', '{replica}', v) ORDER BY a
>>> print(on_cluster("CREATE VIEW IF NOT EXISTS v AS SELECT 1", "prod"))
CREATE VIEW IF NOT EXISTS v ON CLUSTER 'prod' AS SELECT 1
"""

from __future__ import annotations

import re

# CREATE TABLE|VIEW|MATERIALIZED VIEW [IF NOT EXISTS] name: ON CLUSTER goes right after the name.
_CREATE = re.compile(
    r"^(\s*CREATE\s+(?:TABLE|VIEW|MATERIALIZED\s+VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?)([A-Za-z_][A-Za-z0-9_.]*)",
    re.IGNORECASE,
)
# ENGINE = [Replacing|Summing|Aggregating|...]MergeTree[(args)]
_ENGINE = re.compile(r"\bENGINE\s*=\s*([A-Za-z]*)MergeTree\b(\(([^()]*)\))?")
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
KEEPER_PATH = "/clickhouse/tables/{shard}/{database}/%s"


def check_cluster_name(cluster: str) -> str:
    """``cluster`` if it is a plain cluster name (it is quoted into DDL), else ValueError."""
    if not _CLUSTER_NAME.match(cluster):
        raise ValueError(f"not a ClickHouse cluster name: {cluster!r}")
    return cluster


def on_cluster(statement: str, cluster: str) -> str:
    """``statement`` (one DDL statement of the schema) for the cluster named ``cluster``; statements
    other than ``CREATE`` are returned as they are."""
    create = _CREATE.match(statement)
    if create is None:
        return statement
    table = create.group(2).split(".")[-1]
    clustered = (
        f"{create.group(1)}{create.group(2)} ON CLUSTER '{check_cluster_name(cluster)}'"
        f"{statement[create.end() :]}"
    )

    def replicated(engine: re.Match[str]) -> str:
        args = f"'{KEEPER_PATH % table}', '{{replica}}'"
        if engine.group(3) and engine.group(3).strip():
            args += f", {engine.group(3).strip()}"
        return f"ENGINE = Replicated{engine.group(1)}MergeTree({args})"

    clustered = _ENGINE.sub(replicated, clustered)
    return clustered.replace("non_replicated_deduplication_window", "replicated_deduplication_window")

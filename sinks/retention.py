"""Retention of users' data in ClickHouse: a TTL on every table that holds it, from the settings.

Each such table gets ``TTL toDateTime(<time column>) + INTERVAL <days> DAY``: ClickHouse removes a row
once its time is older than that, when it merges the row's part (and, when the TTL is set or changed,
in the existing parts at once). ``days`` is ``FOREWARN_RETENTION_DAYS``, or the table's entry in
``FOREWARN_RETENTION_OVERRIDES``. The tables and their time columns:

* every table the sink writes whose spec names a row time (``TableSpec.time_index``);
* the tables ClickHouse derives from them (:data:`streams.contracts.privacy.DERIVED_USER_TABLES`);
* ``dead_letters`` (by ``rejected_at``), and the audit tables ``erasures`` (``completed_at``) and
  ``api_audit`` (``at``) where they exist.

It runs after the migrations at every start, so a changed setting takes effect at the next start; a
table whose TTL is already the one configured is left alone (changing a TTL rewrites the table's
parts). An override naming any other table is refused, naming it: a typo must not silently keep data
longer than intended.

>>> from sinks.rows import DEAD_LETTERS, EVENTS
>>> plan = retention_plan([EVENTS, DEAD_LETTERS], 365, {"dead_letters": 30},
...     existing={"events", "dead_letters", "user_scores_latest", "intervention_outcomes"})
>>> plan["events"], plan["dead_letters"], plan["user_scores_latest"]
(('event_time', 365), ('rejected_at', 30), ('scored_at', 365))
>>> ttl_expression("event_time", 365)
'toDateTime(event_time) + INTERVAL 365 DAY'
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol

from streams.contracts.privacy import AUDIT_TABLES, DEAD_LETTER_TABLE, DERIVED_USER_TABLES, spec_tables

log = logging.getLogger(__name__)


class RetentionSettings(Protocol):
    retention_days: int

    def retention(self) -> dict[str, int]: ...


def ttl_expression(time_column: str, days: int) -> str:
    return f"toDateTime({time_column}) + INTERVAL {int(days)} DAY"


def shown_ttl(time_column: str, days: int) -> str:
    """The same TTL as ClickHouse shows it back in ``system.tables.engine_full``."""
    return f"toDateTime({time_column}) + toIntervalDay({int(days)})"


def retention_plan(
    specs: Iterable[Any], days: int, overrides: Mapping[str, int], existing: Collection[str]
) -> dict[str, tuple[str, int]]:
    """table -> (time column, days to keep). ``existing``: the tables of the database. A table of the
    sink's specs or a derived table that does not exist, or an override for a table not in the plan,
    is a ``ValueError`` naming it."""
    columns: dict[str, str] = {}
    for table in [*spec_tables(specs), *DERIVED_USER_TABLES]:
        if table.time_column is not None:
            columns.setdefault(table.table, table.time_column)
    missing = sorted(name for name in columns if name not in existing)
    if missing:
        raise ValueError(f"retention: tables {missing} do not exist in ClickHouse (migrations not applied?)")
    for table in (DEAD_LETTER_TABLE, *AUDIT_TABLES):  # where present
        if table.table in existing and table.time_column is not None:
            columns.setdefault(table.table, table.time_column)
    unknown = sorted(name for name in overrides if name not in columns)
    if unknown:
        raise ValueError(
            f"FOREWARN_RETENTION_OVERRIDES names {', '.join(map(repr, unknown))}, not a table with a"
            f" retention; the tables are: {', '.join(sorted(columns))}"
        )
    return {table: (column, overrides.get(table, days)) for table, column in columns.items()}


def apply_retention(store: Any, specs: Iterable[Any], settings: RetentionSettings) -> dict[str, int]:
    """Set the TTL of every table of :func:`retention_plan` (``store``: a
    :class:`sinks.clickhouse.ClickHouseStore`); returns table -> days. Tables already right are left
    as they are."""
    plan = retention_plan(specs, settings.retention_days, settings.retention(), set(store.tables()))
    changed = []
    for table, (column, days) in sorted(plan.items()):
        if store.table_ttl(table) == shown_ttl(column, days):
            continue
        store.set_ttl(table, ttl_expression(column, days))
        changed.append(f"{table}={days}d")
    kept = ", ".join(f"{table}={days}d" for table, (_, days) in sorted(plan.items()))
    if changed:
        log.info("ClickHouse retention set: %s (all: %s)", ", ".join(changed), kept)
    else:
        log.info("ClickHouse retention unchanged: %s", kept)
    return {table: days for table, (_, days) in plan.items()}

"""The sink's pure parts, and its ClickHouse side against the embedded engine: schema, idempotent
inserts, the views, and what a restarted sink reads back."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sinks.clickhouse import ClickHouseStore, batch_token, migrations
from sinks.consumer import Batcher, RecentIds, TableBatch
from sinks.rows import DEAD_LETTERS, EVENTS, INTERVENTIONS, dead_letter_row, event_row, intervention_row
from streams.deadletters import dead_letter_headers
from streams.events import CLICKSTREAM, Event
from streams.interventions import Intervention

T = 1_764_000_000.0


def event_message(index: int, user: str = "u1") -> bytes:
    return orjson.dumps(
        Event(f"e{index}", "page_view", CLICKSTREAM, T + index, user, {"page": "/"}).to_wire()
    )


def intervention_message(index: int) -> bytes:
    intervention = Intervention(
        f"00000000-0000-5000-8000-{index:012d}",
        "delay_notice",
        "notify_delay",
        "u1",
        T,
        "late",
        "l1",
        {"x": 1},
    )
    return orjson.dumps(intervention.to_wire(decided_at=T + 1))


# --- pure


def test_batcher_is_due_by_size_or_by_age() -> None:
    batcher = Batcher({"events": EVENTS}, batch_rows=3, flush_seconds=2.0)
    assert not batcher.due(now=0.0) and batcher.wait_seconds(now=0.0) == 2.0
    batcher.add("events", 0, 10, ("r",), now=100.0)
    assert not batcher.due(now=101.9) and batcher.wait_seconds(now=101.5) == 0.5
    assert batcher.due(now=102.0)
    batcher.add("events", 1, 4, ("r",), now=100.1)
    batcher.add("events", 0, 11, ("r",), now=100.2)
    assert batcher.rows() == 3 and batcher.due(now=100.2)


def test_messages_without_rows_are_still_committed() -> None:
    batcher = Batcher({"events": EVENTS}, batch_rows=10, flush_seconds=1.0)
    batcher.add("events", 0, 7, ("r",), now=0.0)
    batcher.add("events", 0, 8, None, now=0.0)  # a duplicate or a dead letter
    batcher.add("events", 2, 3, None, now=0.0)
    assert batcher.commit_offsets() == {("events", 0): 9, ("events", 2): 4}
    assert [len(b.rows) for b in batcher.tables.values()] == [1]
    batcher.clear()
    assert batcher.commit_offsets() == {} and batcher.opened_at is None and not batcher.due(now=99.0)


def test_batch_token_depends_on_table_and_ranges_only() -> None:
    batch = TableBatch(EVENTS)
    for offset in (5, 6, 7):
        batch.add(0, offset, ("r",))
    batch.add(3, 1, ("r",))
    assert batch.ranges == {0: [5, 7], 3: [1, 1]}
    assert batch.token() == batch_token("events", [(3, 1, 1), (0, 5, 7)])
    assert batch.token() != batch_token("interventions", [(0, 5, 7), (3, 1, 1)])
    assert batch.token() != batch_token("events", [(0, 5, 8), (3, 1, 1)])


def test_recent_ids_forget_the_oldest() -> None:
    recent = RecentIds(limit=3)
    assert [recent.add(x) for x in "abca"] == [True, True, True, False]
    assert recent.add("d") and "a" not in recent and "d" in recent


def test_rows_match_their_tables_columns() -> None:
    row = event_row(event_message(1), [], 2, 40)
    assert len(row) == len(EVENTS.columns) and row[3] == round((T + 1) * 1000) and row[-2:] == (2, 40)
    row = intervention_row(intervention_message(1), [], 1, 9)
    assert len(row) == len(INTERVENTIONS.columns) and row[5] == T * 1000 and row[6] == (T + 1) * 1000
    headers = dead_letter_headers("clickstream", 4, 99, "malformed_json", "bad", T)
    row = dead_letter_row(b"{oops", headers, 0, 5)
    assert row == ("clickstream", 4, 99, "malformed_json", "bad", T * 1000, b"{oops", 5, 0, 5)
    assert (
        DEAD_LETTERS.row_id(row) == "clickstream:4:99"
        and EVENTS.row_id(event_row(event_message(3), [], 0, 0)) == "e3"
    )


def test_dead_letter_rows_tolerate_foreign_headers() -> None:
    row = dead_letter_row(None, [("forewarn.dlq.source_offset", b"nan?"), ("other", b"\xff")], 1, 2)
    assert row == ("", -1, -1, "unknown", "", 0, b"", 0, 1, 2)


@pytest.mark.parametrize("table_row", [event_row, intervention_row])
def test_unreadable_values_raise_value_errors(table_row) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        table_row(b'{"event_id": 1}', [], 0, 0)


def test_schema_files_split_into_create_statements() -> None:
    [first] = [m for m in migrations() if m.version == 1]
    statements = first.statements()
    assert len(statements) == 13 and all(s.startswith("CREATE ") for s in statements)


# --- against the embedded ClickHouse


@pytest.fixture
def store(tmp_path: Path) -> ClickHouseStore:
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    yield store
    store.close()


def test_schema_applies_once(store: ClickHouseStore) -> None:
    versions = [migration.version for migration in migrations()]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 5
    assert store.apply_schema() == versions
    assert store.apply_schema() == []
    assert store.schema_version() == versions[-1]


def test_a_retried_batch_is_stored_once_and_counted_once(store: ClickHouseStore) -> None:
    store.apply_schema()
    rows = [event_row(event_message(i, user=f"u{i % 3}"), [], 0, i) for i in range(10)]
    token = batch_token("events", [(0, 0, 9)])
    store.insert("events", EVENTS.columns, rows, token)
    store.insert("events", EVENTS.columns, rows, token)  # the retry after a failure we could not see
    assert store.query("SELECT count() FROM events") == [(10,)]
    assert store.query("SELECT sum(events) FROM events_per_minute") == [(10,)]
    assert store.stored_offsets("events") == {0: 9}
    assert sorted(store.recent_ids("events", EVENTS.id_sql, 0, 7)) == ["e7", "e8", "e9"]


def test_interventions_and_dead_letters_feed_their_views(store: ClickHouseStore) -> None:
    store.apply_schema()
    store.insert(
        "interventions",
        INTERVENTIONS.columns,
        [intervention_row(intervention_message(i), [], 1, i) for i in range(3)],
        "t1",
    )
    dead = [
        dead_letter_row(b"x", dead_letter_headers("logistics", 0, i, "oversized", "", T), 2, i)
        for i in range(2)
    ]
    store.insert("dead_letters", DEAD_LETTERS.columns, dead, "t2")
    assert store.query("SELECT trigger, sum(interventions) FROM interventions_per_minute GROUP BY 1") == [
        ("delay_notice", 3)
    ]
    assert store.query("SELECT reason, sum(dead_letters) FROM dead_letters_per_minute GROUP BY 1") == [
        ("oversized", 2)
    ]
    assert store.stored_offsets("interventions") == {1: 2} and store.stored_offsets("dead_letters") == {2: 1}
    assert store.recent_ids("dead_letters", DEAD_LETTERS.id_sql, 2, 0) == ["logistics:0:0", "logistics:0:1"]

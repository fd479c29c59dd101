"""The sink's pure parts, and its ClickHouse side against the embedded engine: schema, idempotent
inserts, the views, and what a restarted sink reads back."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from sinks.clickhouse import ClickHouseStore, batch_token, migrations
from sinks.consumer import Batcher, ClickHouseSink, RecentIds, TableBatch
from sinks.rows import (
    DEAD_LETTERS,
    DECISIONS,
    EVENTS,
    INTERVENTIONS,
    dead_letter_row,
    event_row,
    intervention_row,
)
from streams.contracts.deadletters import dead_letter_headers
from streams.contracts.events import CLICKSTREAM, Event
from streams.contracts.interventions import Intervention
from streams.contracts.privacy import Pseudonymizer, RowPseudonymizer, pseudonymize_row

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


def test_the_batcher_holds_at_most_batch_rows_rows_over_all_tables() -> None:
    """The bound on the sink's memory while ClickHouse is away: rows of every table count, and a fetch
    may take only the room left (before, each table could hold almost ``batch_rows``, and a fetch of
    ``batch_rows`` more came on top)."""
    batcher = Batcher({"events": EVENTS, "interventions": INTERVENTIONS}, batch_rows=4, flush_seconds=60.0)
    assert batcher.room() == 4
    for offset in range(3):
        batcher.add("events", 0, offset, ("r",), now=0.0)
    assert batcher.room() == 1 and not batcher.due(now=0.0)
    batcher.add("interventions", 1, 0, ("r",), now=0.0)
    batcher.add("interventions", 1, 1, None, now=0.0)  # no row: takes no room
    assert batcher.rows() == 4 and batcher.room() == 0 and batcher.due(now=0.0)
    batcher.clear()
    assert batcher.rows() == 0 and batcher.room() == 4


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
    oops = hashlib.sha256(b"{oops").hexdigest()
    assert row == ("clickstream", 4, 99, "malformed_json", 0, "bad", T * 1000, b"{oops", 5, 5, oops, "", 0, 5)
    assert (
        DEAD_LETTERS.row_id(row) == "clickstream:4:99:malformed_json:0"
        and EVENTS.row_id(event_row(event_message(3), [], 0, 0)) == "e3"
    )


def test_dead_letter_rows_tolerate_foreign_headers() -> None:
    row = dead_letter_row(None, [("forewarn.dlq.source_offset", b"nan?"), ("other", b"\xff")], 1, 2)
    assert row == ("", -1, -1, "unknown", 0, "", 0, b"", 0, 0, hashlib.sha256(b"").hexdigest(), "", 1, 2)


@pytest.mark.parametrize("table_row", [event_row, intervention_row])
def test_unreadable_values_raise_value_errors(table_row) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        table_row(b'{"event_id": 1}', [], 0, 0)


# --- storing: a batch taken, sealed, stored (in the background), committed


class HeldStore:
    """A store whose inserts wait until released, recording what they got."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.inserted: list[list[str]] = []  # event ids per insert

    def insert(self, table: str, columns: Any, rows: Any, token: str) -> float:
        self.started.set()
        assert self.release.wait(10), "never released"
        self.inserted.append([row[0] for row in rows])
        return 0.0


class RecordingConsumer:
    """What the sink asks of its consumer while storing: the assignment and commits (recorded)."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("events", 0)}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def held_sink(batch_rows: int) -> tuple[ClickHouseSink, HeldStore, RecordingConsumer]:
    store, consumer = HeldStore(), RecordingConsumer()
    sink = ClickHouseSink(
        store,  # type: ignore[arg-type]
        {"events": EVENTS},
        bootstrap_servers=["unused:9092"],
        group_id="g",
        dead_letter_topic="dead_letters",
        pseudonymize=Pseudonymizer(b"the key of the sink tests"),
        batch_rows=batch_rows,
        flush_seconds=3600.0,
    )
    sink.consumer = consumer  # type: ignore[assignment]
    return sink, store, consumer


def records(offsets: range) -> list[ConsumerRecord]:
    return [
        ConsumerRecord("events", 0, offset, 0, 0, b"u1", event_message(offset), None, 2, 0, [])
        for offset in offsets
    ]


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_rows_taken_during_a_store_are_neither_stored_nor_committed_with_it() -> None:
    """A rebalance flush can run while the run loop takes more (at an await in between): what it took
    after the flush began must wait for the next store. (Before, the commit after the insert covered
    them, and clearing the batch then dropped them: rows committed, never stored.)"""
    sink, store, consumer = held_sink(batch_rows=100)
    tp = TopicPartition("events", 0)
    await sink._take(tp, records(range(3)))
    flushing = asyncio.create_task(sink.flush())
    await until(store.started.is_set)
    await sink._take(tp, records(range(3, 5)))  # while the insert of 0..2 is under way
    store.release.set()
    await flushing
    assert store.inserted == [["e0", "e1", "e2"]] and consumer.commits == [{tp: 3}]
    await sink.flush()
    assert store.inserted[1] == ["e3", "e4"] and consumer.commits[1] == {tp: 5}


async def test_a_due_batch_is_stored_in_the_background_and_the_next_waits_for_it() -> None:
    sink, store, consumer = held_sink(batch_rows=2)
    tp = TopicPartition("events", 0)
    await sink._take(tp, records(range(2)))
    await sink._store_if_due()  # due by size: stored in the background
    await until(store.started.is_set)
    assert sink.batcher.rows() == 0 and sink.batcher.room() == 2  # the next batch is taken meanwhile
    await sink._take(tp, records(range(2, 4)))
    second = asyncio.create_task(sink._store_if_due())  # due too: waits for the first
    await asyncio.sleep(0.05)
    assert not second.done() and consumer.commits == []
    assert REGISTRY.get_sample_value("forewarn_sink_pending_rows") == 4  # two batches at most
    store.release.set()
    await second
    await sink.flush()
    assert store.inserted == [["e0", "e1"], ["e2", "e3"]]
    assert consumer.commits == [{tp: 2}, {tp: 4}]  # in order, each after its insert
    assert REGISTRY.get_sample_value("forewarn_sink_pending_rows") == 0


class FlakyReads:
    """ClickHouse away for the first ``failures`` reads of the stored offsets."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.reads = 0

    def stored_offsets(self, table: str) -> dict[int, int]:
        self.reads += 1
        if self.reads <= self.failures:
            raise ConnectionError("ClickHouse is away")
        return {0: 9}

    def recent_ids(self, table: str, id_sql: str, partition: int, from_offset: int, limit: int) -> list[str]:
        return [f"e{offset}" for offset in range(max(0, from_offset), 10)][-limit:]


class AssignedConsumer(RecordingConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.paused_now: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused_now.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused_now.difference_update(partitions)

    async def committed(self, tp: TopicPartition) -> int | None:
        return 5  # the previous owner stored through 9 but committed only up to 5

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert tp in self.paused_now, "sought while fetchable"
        self.positions[tp] = offset


async def test_an_assignment_while_clickhouse_is_away_waits_for_what_it_holds() -> None:
    """A rebalance during an outage: the new owner must still seek past what the previous owner stored
    without committing, and know the ids it stored, or it stores them twice. (Before, the failed read
    escaped the callback and the partition was consumed from its committed offset.)"""
    sink, _, _ = held_sink(batch_rows=100)
    sink.store = FlakyReads(failures=2)  # type: ignore[assignment]
    sink.consumer = consumer = AssignedConsumer()  # type: ignore[assignment]
    tp = TopicPartition("events", 0)
    await sink.resume_after_stored([tp])
    assert sink.store.reads == 3 and consumer.positions == {tp: 10} and not consumer.paused_now
    assert "e9" in sink._recent[tp] and sink.stored_to() == {tp: 10}


def test_the_sinks_pseudonyms_are_pseudonymize_rows() -> None:
    """The sink caches the per-user work; the rows are the same as pseudonymize_row's, for users
    seen again, a full cache emptied, the empty id and ids in JSON."""
    pseudonymize = Pseudonymizer(b"the key of the sink tests")
    cached = RowPseudonymizer(pseudonymize, limit=2)
    rows = [
        ("e1", "u1", '{"owner":"u1","page":"/u1"}', 7),
        ("e2", "u2", "plain", 8),
        ("e3", "u1", '["u1", "\\u674e"]', 9),
        ("e4", "李", '{"owner":"\\u674e","x":"李"}', 10),
        ("e5", "", '{"owner":""}', 11),
        ("e6", "u2", '"u2"', 12),
    ]
    for row in rows * 2:
        assert cached(row, 1) == pseudonymize_row(row, 1, pseudonymize), row
    with pytest.raises(TypeError):
        cached(("e7", 42, ""), 1)


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
    assert store.recent_ids("dead_letters", DEAD_LETTERS.id_sql, 2, 0) == [
        "logistics:0:0:oversized:0",
        "logistics:0:1:oversized:0",
    ]


class SentDeadLetters:
    """The sink's producer, as far as dead letters go: what was sent, recorded."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, dict[str, bytes]]] = []  # value, headers

    async def send_and_wait(self, topic: str, value: Any, key: Any, headers: Any) -> None:
        self.sent.append((value, dict(headers)))


def envelope(*items: bytes) -> bytes:
    return b'{"envelope":1,"events":[' + b",".join(items) + b"]}"


async def test_envelopes_give_a_row_per_event_and_dead_letter_a_broken_one_alone(
    store: ClickHouseStore,
) -> None:
    """An envelope of events (streams.contracts.envelopes) is stored as one row per event, each with the
    envelope's partition and offset and its event id (so duplicates across envelopes and single
    messages are still dropped); an event that gives no row is dead-lettered alone, its neighbours are
    stored; a single event (the form before envelopes) is still read."""
    store.apply_schema()
    sink, _, consumer = held_sink(batch_rows=100)
    sink.store, sink.producer = store, SentDeadLetters()
    broken = b'{"event_id":"bad","attrs":[]}'
    tp = TopicPartition("events", 0)
    values = [
        envelope(event_message(0), broken, event_message(1)),
        event_message(2),  # a single event
        envelope(event_message(1), event_message(3)),  # e1 again: a duplicate
        b'{"envelope":2,"events":[]}',  # not an envelope this sink reads: the whole message refused
    ]
    messages = [
        ConsumerRecord("events", 0, offset, 0, 0, b"u", value, None, 1, 0, [])
        for offset, value in enumerate(values, start=10)
    ]
    await sink._take(tp, messages)
    await sink.flush()
    stored = store.query("SELECT event_id, kafka_partition, kafka_offset FROM events ORDER BY event_id")
    assert stored == [("e0", 0, 10), ("e1", 0, 10), ("e2", 0, 11), ("e3", 0, 12)]
    assert consumer.commits == [{tp: 14}]
    (item, item_headers), (whole, whole_headers) = sink.producer.sent
    assert item == broken and whole == values[3]
    assert item_headers["forewarn.dlq.reason"] == whole_headers["forewarn.dlq.reason"] == b"unreadable_events"
    assert (item_headers["forewarn.dlq.source_offset"], whole_headers["forewarn.dlq.source_offset"]) == (
        b"10",
        b"13",
    )
    # Fetches are sized by the rows a message held, so that the rows held stay near batch_rows.
    assert sink.batcher.room() == 66  # 6 rows in 4 messages


async def test_an_id_of_the_wrong_type_is_dead_lettered_and_the_sink_goes_on() -> None:
    """A decision whose intervention id is a number (or an object) is dead-lettered; the decisions
    after it are taken. (Before, reading its UUID raised AttributeError, which stopped the sink.)"""
    sink, _, _ = held_sink(batch_rows=100)
    sink.specs = sink.batcher.specs = {"decisions": DECISIONS}
    sink.producer = SentDeadLetters()
    good = decision_value("0B8A6128-0B8A-5EE9-BFAB-18E8F49F0582")
    values = [decision_value(5), decision_value({"id": 1}), good]
    messages = [
        ConsumerRecord("decisions", 0, i, 0, 0, b"u", v, None, 1, 0, []) for i, v in enumerate(values)
    ]
    await sink._take(TopicPartition("decisions", 0), messages)
    assert [value for value, _ in sink.producer.sent] == values[:2]
    (batch,) = sink.batcher.tables.values()
    assert [row[0] for row in batch.rows] == ["0b8a6128-0b8a-5ee9-bfab-18e8f49f0582"]


def decision_value(intervention_id: Any) -> bytes:
    return orjson.dumps(
        {
            "intervention_id": intervention_id,
            "decision": "emitted",
            "reason": "",
            "trigger": "delay_notice",
            "action": "notify_delay",
            "channel": "chat",
            "priority": 80,
            "user_id": "u1",
            "event_time": "2026-11-24T03:49:32.102Z",
            "decided_at": "2026-11-24T03:49:33.260Z",
        }
    )


async def test_two_events_refused_in_one_envelope_are_two_dead_letters_and_two_rows(
    store: ClickHouseStore,
) -> None:
    """Each event refused in an envelope is dead-lettered with its position in it (source_item), which
    is part of the dead letter's row id and of the table's sorting key. (Before, both had the id
    topic:partition:offset:reason: the sink dropped the second as a duplicate, and ClickHouse kept one
    of the two.)"""
    store.apply_schema()
    sink, _, _ = held_sink(batch_rows=100)
    sink.store, sink.producer = store, SentDeadLetters()
    broken = [b'{"event_id":"bad1","attrs":[]}', b'{"event_id":"bad2","attrs":[]}']
    value = envelope(broken[0], event_message(0), broken[1])
    message = ConsumerRecord("events", 0, 10, 0, 0, b"u", value, None, 1, 0, [])
    await sink._take(TopicPartition("events", 0), [message])
    await sink.flush()
    sent = sink.producer.sent
    assert [(letter, headers["forewarn.dlq.source_item"]) for letter, headers in sent] == [
        (broken[0], b"1"),
        (broken[1], b"3"),
    ]
    rows = [dead_letter_row(letter, list(headers.items()), 0, i) for i, (letter, headers) in enumerate(sent)]
    assert [DEAD_LETTERS.row_id(row) for row in rows] == [
        "events:0:10:unreadable_events:1",
        "events:0:10:unreadable_events:3",
    ]
    store.insert("dead_letters", DEAD_LETTERS.columns, rows, "t1")
    assert store.query("SELECT source_item, payload FROM dead_letters FINAL ORDER BY source_item") == [
        (1, broken[0].decode()),
        (3, broken[1].decode()),
    ]

"""Privacy on the ClickHouse side: keyed pseudonyms before storage, erasure at the sink, retention.

The sink tests run the real :class:`sinks.consumer.ClickHouseSink` against the embedded broker and the
embedded ClickHouse (chdb) in a temporary directory; the erasure's delete is also checked against a real
ClickHouse server over HTTP.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

import streams.contracts.privacy as privacy
from sinks import rows as row_specs
from sinks.clickhouse import ClickHouseStore
from sinks.consumer import ClickHouseSink
from sinks.erasure import ErasureQueue, erase_user, erasure_tables, record_erasure
from sinks.retention import apply_retention, retention_plan
from sinks.rows import DEAD_LETTERS, DECISIONS, EVENTS, INTERVENTIONS, SCORES, TableSpec
from streams.contracts.deadletters import dead_letter_headers
from streams.contracts.erasure import Erasure, erasure_record
from streams.contracts.events import CLICKSTREAM, OUTCOMES, Event
from streams.contracts.interventions import Intervention
from streams.contracts.privacy import (
    Pseudonymizer,
    load_cluster_secret,
    load_key,
    pseudonymize_row,
    user_tables,
)
from streams.contracts.settings import Settings
from streams.contracts.time import iso_time
from tests.support.harness import traces

KEY = b"the key of the privacy tests"
PSEUDONYMIZE = Pseudonymizer(KEY)
A, B = "alice-7f3a", "bob-19c2"  # distinctive: a raw id found anywhere is a leak, not a coincidence
T = float(int(time.time()) - 3600)  # whole seconds (ISO times keep ms); recent: nothing expires


def key_settings(key: str = "", key_file: str = "") -> Settings:
    return Settings.from_env({}, pseudonym_key=key, pseudonym_key_file=key_file)


# --- pseudonyms and the key


def test_a_pseudonym_is_a_stable_keyed_hash() -> None:
    alias = PSEUDONYMIZE(A)
    assert alias == hmac.new(KEY, A.encode(), hashlib.sha256).hexdigest()[:32]
    assert len(alias) == 32 and int(alias, 16) >= 0
    assert alias == Pseudonymizer(KEY)(A) != PSEUDONYMIZE(B)
    assert Pseudonymizer(b"some other key, just as long")(A) != alias
    assert alias != hashlib.sha256(A.encode()).hexdigest()[:32]  # not the guessable plain hash
    assert PSEUDONYMIZE("") == ""
    assert "privacy tests" not in repr(PSEUDONYMIZE) and "privacy tests" not in str(PSEUDONYMIZE)


def test_the_key_setting_must_be_long_enough() -> None:
    assert load_key(key_settings(key="sixteen chars ok")) == b"sixteen chars ok"
    with pytest.raises(ValueError, match="at least 16"):
        load_key(key_settings(key="too short"))


def test_the_key_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dirs" / "pseudonym.key"
    settings = key_settings(key_file=str(path))
    key = load_key(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64 and bytes.fromhex(key.decode())  # 32 random bytes in hex
    inode = path.stat().st_ino
    assert load_key(settings) == key and path.stat().st_ino == inode
    assert os.listdir(path.parent) == ["pseudonym.key"]  # no temporary file left behind
    # The file's text is the key: set as FOREWARN_PSEUDONYM_KEY it gives the same pseudonyms.
    assert Pseudonymizer(load_key(key_settings(key=path.read_text().strip())))(A) == Pseudonymizer(key)(A)
    assert load_key(key_settings(key_file=str(tmp_path / "other.key"))) != key


def test_the_cluster_secret_is_its_own_setting_and_file(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {},
        pseudonym_key_file=str(tmp_path / "pseudonym.key"),
        cluster_secret_file=str(tmp_path / "cluster.key"),
    )
    secret = load_cluster_secret(settings)
    assert len(secret) == 64 and secret != load_key(settings)
    assert stat.S_IMODE((tmp_path / "cluster.key").stat().st_mode) == 0o600
    assert load_cluster_secret(settings) == secret
    assert (
        load_cluster_secret(Settings.from_env({}, cluster_secret="sixteen chars ok")) == b"sixteen chars ok"
    )
    with pytest.raises(ValueError, match="FOREWARN_CLUSTER_SECRET must be at least 16"):
        load_cluster_secret(Settings.from_env({}, cluster_secret="short"))
    assert "sixteen chars ok" not in repr(Settings.from_env({}, cluster_secret="sixteen chars ok"))


def test_concurrent_creators_end_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "pseudonym.key"
    start = threading.Barrier(16)

    def create() -> bytes:
        start.wait()
        return load_key(key_settings(key_file=str(path)))

    with ThreadPoolExecutor(16) as pool:
        keys = list(pool.map(lambda _: create(), range(16)))
    assert len(set(keys)) == 1 and keys[0] == path.read_text().strip().encode()
    assert os.listdir(path.parent) == ["pseudonym.key"]


def test_the_creator_that_loses_the_race_takes_the_winners_key(tmp_path: Path, monkeypatch) -> None:
    """Deterministic race: while one worker draws its key, another creates the key file first."""
    path = tmp_path / "pseudonym.key"
    draws: list[str] = []
    other: list[bytes] = []

    def draw() -> str:
        draws.append("drawn")
        if len(draws) == 1:  # the first worker's draw: the other one runs to completion meanwhile
            other.append(load_key(key_settings(key_file=str(path))))
            return "loser" + "1" * 59
        return "winner" + "0" * 58

    monkeypatch.setattr(privacy, "_new_key", draw)
    first = load_key(key_settings(key_file=str(path)))
    assert first == other[0] == b"winner" + b"0" * 58 == path.read_text().strip().encode()
    assert os.listdir(tmp_path) == ["pseudonym.key"]


def test_without_hard_links_the_key_file_is_created_exclusively(tmp_path: Path, monkeypatch) -> None:
    def no_links(source: Any, target: Any) -> None:
        raise OSError(errno.EPERM, "hard links not supported here")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "pseudonym.key"
    key = load_key(key_settings(key_file=str(path)))
    assert len(key) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(key_settings(key_file=str(path))) == key and os.listdir(tmp_path) == ["pseudonym.key"]


def test_a_row_loses_its_raw_id_in_the_user_column_and_in_json() -> None:
    alias = PSEUDONYMIZE(A)
    row = ("o1", A, f'{{"user_id":"{A}","note":"{A} wrote"}}', f"free text by {A}", 7)
    assert pseudonymize_row(row, 1, PSEUDONYMIZE) == (
        "o1",
        alias,
        f'{{"user_id":"{alias}","note":"{A} wrote"}}',  # only the JSON string that IS the id
        f"free text by {A}",
        7,
    )
    chinese = "李雷"
    escaped = orjson.dumps({"user_id": chinese}).decode(), '{"user_id": "\\u674e\\u96f7"}'
    done = pseudonymize_row((chinese, *escaped), 0, PSEUDONYMIZE)
    assert chinese not in "".join(done) and "\\u674e" not in "".join(done)
    with pytest.raises(TypeError):
        pseudonymize_row(("o1", 42), 1, PSEUDONYMIZE)


# --- erasure messages and their queue


def erasure_message(user: str, request_id: str = "req-1", erased_at: float | None = None) -> bytes:
    """As the worker sends it (:func:`streams.contracts.erasure.erasure_record`)."""
    event = Event(
        "er1", "erasure_requested", "erasure", T, user, {"request_id": request_id, "requested_by": "dpo"}
    )
    return orjson.dumps(erasure_record(event, True, time.time() if erased_at is None else erased_at))


def test_the_workers_erasure_record_reads_back() -> None:
    erasure = Erasure.from_wire(erasure_message(A, erased_at=T + 60))
    assert (erasure.user_id, erasure.request_id, erasure.requested_by, erasure.state_removed) == (
        A,
        "req-1",
        "dpo",
        True,
    )
    assert erasure.requested_at_ms == round(T * 1000) and erasure.erased_at_ms == round((T + 60) * 1000)
    for bad in (b"not json", b"[]", orjson.dumps({"schema": 2}), orjson.dumps({"schema": 1, "user_id": ""})):
        with pytest.raises(ValueError):
            Erasure.from_wire(bad)


def test_erasures_wait_for_their_marks_and_are_done_in_order() -> None:
    first, second = Erasure.from_wire(erasure_message(A)), Erasure.from_wire(erasure_message(B, "req-2"))
    queue = ErasureQueue()
    queue.add("e0", 3, first, {"events0": 10, "scores0": 4, "empty": 0})
    queue.add("e0", 4, None, {})  # unreadable: done (committed) in its turn only
    queue.add("e0", 5, second, {"events0": 12})
    assert queue.ready({"events0": 11}) == [] and queue.waiting() == {"scores0": 4}
    assert [(p.offset, p.erasure) for p in queue.ready({"scores0": 4})] == [(3, first), (4, None)]
    assert queue.ready({"scores0": 4}) == [] and queue.waiting() == {"events0": 12} and len(queue) == 1
    assert [p.erasure for p in queue.ready({"events0": 12})] == [second] and len(queue) == 0
    queue.add("e0", 6, first, {"events0": 20})
    queue.add("e1", 0, second, {"events0": 20})
    assert queue.drop([TopicPartition("x", 0), "e0"]) == 1 and queue.waiting() == {"events0": 20}


# --- ClickHouse


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    store.apply_schema()
    yield store
    store.close()


@pytest.fixture(params=["chdb", pytest.param("http", marks=pytest.mark.integration)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClickHouseStore]:
    """The embedded engine, and a real server over HTTP."""
    if request.param == "chdb":
        store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
        store.apply_schema()
        yield store
        store.close()
        return
    store = ClickHouseStore(request.getfixturevalue("clickhouse_server").url)
    store.apply_schema()
    yield store
    store.close()


ALL_SPECS = [value for value in vars(row_specs).values() if isinstance(value, TableSpec)]


def test_every_table_with_a_user_id_is_erased(store: ClickHouseStore) -> None:
    """The specs plus the derived tables cover every table of the schema that has a user_id column."""
    assert 0 < len([s for s in ALL_SPECS if s.user_index is not None]) < len(ALL_SPECS)
    with_user_id = set(store.tables_with_column("user_id"))
    assert {"events", "user_scores_latest", "intervention_outcomes"} <= with_user_id
    assert with_user_id <= {t.table for t in user_tables(ALL_SPECS)}
    assert "erasures" in store.tables() and "erasures" not in with_user_id


def event_row_of(user: str, index: int, source: str = CLICKSTREAM, **attrs: Any) -> tuple[Any, ...]:
    event = Event(
        f"e{index}",
        "page_view" if source == CLICKSTREAM else "delivered",
        source,
        T + index,
        user,
        attrs,
    )
    return pseudonymize_row(EVENTS.to_row(orjson.dumps(event.to_wire()), [], 0, index), 4, PSEUDONYMIZE)


def stored_row(spec: TableSpec, value: bytes, offset: int, headers: Any = ()) -> tuple[Any, ...]:
    """The row the sink stores for a message of ``spec``'s topic: read, then pseudonymised."""
    row = spec.to_row(value, list(headers), 0, offset)
    return row if spec.user_index is None else pseudonymize_row(row, spec.user_index, PSEUDONYMIZE)


def dead_letter_of(payload: bytes, offset: int) -> tuple[Any, ...]:
    return stored_row(
        DEAD_LETTERS, payload, offset, dead_letter_headers("clickstream", 0, offset, "malformed_json", "", T)
    )


def test_erase_user_deletes_counts_and_audits_without_the_user(any_store: ClickHouseStore) -> None:
    store = any_store
    outcome = {"intervention_id": "00000000-0000-5000-8000-000000000001", "channel": "chat"}
    store.insert(
        "events",
        EVENTS.columns,
        [event_row_of(A, 1), event_row_of(A, 2, OUTCOMES, **outcome), event_row_of(B, 3)],
        "t1",
    )
    dead = [dead_letter_of(b'{"user_id": "%s", "event_type": ' % A.encode(), 1), dead_letter_of(b"{not", 2)]
    store.insert("dead_letters", DEAD_LETTERS.columns, dead, "t2")
    # A table added later and listed nowhere, with a projection: found by its user_id column, and
    # erased by mutation since a lightweight delete is refused there.
    store.client.command(
        "CREATE TABLE notes (user_id String, note String, PROJECTION by_user (SELECT user_id, count()"
        " GROUP BY user_id)) ENGINE = MergeTree ORDER BY note"
    )
    store.insert(
        "notes", ("user_id", "note"), [(PSEUDONYMIZE(A), "n1"), (PSEUDONYMIZE(A), "n2"), (B, "n3")], "t3"
    )

    tables = erasure_tables(store, ALL_SPECS)
    names = [t.table for t in tables]
    assert names[-1] == "notes" and {"events", "user_scores_latest", "intervention_outcomes"} <= set(names)
    erasure = Erasure.from_wire(erasure_message(A, request_id=f"gdpr-{A}"))
    deleted = erase_user(store, tables, erasure, PSEUDONYMIZE(A))
    assert set(deleted) == {*names, "dead_letters"}  # every table looked at is in the audit
    assert {table: rows for table, rows in deleted.items() if rows} == {
        "events": 2,
        "intervention_outcomes": 1,
        "notes": 2,
        "dead_letters": 1,
    }
    record_erasure(store, erasure, deleted, completed_at_ms=round(time.time() * 1000))
    assert traces(store.client, [A, PSEUDONYMIZE(A)]) == {}
    assert store.query("SELECT count() FROM events WHERE user_id = {u:String}", {"u": PSEUDONYMIZE(B)}) == [
        (1,)
    ]
    assert store.query("SELECT note FROM notes") == [("n3",)]
    assert store.query("SELECT count() FROM dead_letters") == [(1,)]

    # Done again (a sink that stopped before committing): nothing more to delete, one audit row.
    again = erase_user(store, tables, erasure, PSEUDONYMIZE(A))
    assert set(again.values()) == {0}
    record_erasure(store, erasure, again, completed_at_ms=round(time.time() * 1000) + 1)
    [(request_id, by, removed, counts)] = store.query(
        "SELECT request_id, requested_by, state_removed, rows_deleted FROM erasures FINAL"
    )
    assert (request_id, by, removed, counts) == ("gdpr-[erased]", "dpo", 1, deleted)


def test_an_id_equal_to_another_users_pseudonym_erases_nothing_of_theirs(store: ClickHouseStore) -> None:
    """Pseudonyms are what every ClickHouse reader sees: a user whose id is one of them is erased by
    the pseudonym of that id, not by the id itself."""
    store.insert("events", EVENTS.columns, [event_row_of(B, 1), event_row_of(B, 2)], "t1")
    store.insert("user_scores", SCORES.columns, [stored_row(SCORES, score_message(B, 1)[2], 1)], "t2")
    store.insert(
        "dead_letters", DEAD_LETTERS.columns, [dead_letter_of(b'{"user_id": "%s"}' % B.encode(), 1)], "t3"
    )
    tables = erasure_tables(store, ALL_SPECS)
    before = {table.table: count_of(store, table.table, PSEUDONYMIZE(B)) for table in tables}
    assert {t: n for t, n in before.items() if n} == {
        "events": 2,
        "user_scores": 1,
        "user_scores_latest": 1,
        "dead_letters": 1,
    }

    impostor = Erasure.from_wire(erasure_message(PSEUDONYMIZE(B), request_id="req-impostor"))
    deleted = erase_user(store, tables, impostor, PSEUDONYMIZE(impostor.user_id))
    assert set(deleted.values()) == {0}
    assert {table.table: count_of(store, table.table, PSEUDONYMIZE(B)) for table in tables} == before


def test_erasing_a_word_of_other_users_messages_deletes_only_the_users_dead_letters(
    store: ClickHouseStore,
) -> None:
    """Dead letters are the erased user's by the user id their payload names, not by any mention of
    it: the user ``page_view`` loses theirs, and the other users' page views stay."""
    word = "page_view"
    theirs = [
        dead_letter_of(b'{"user_id": "page_view", "event_type": "login", "event_time": "x"}', 1),
        dead_letter_of(b'{"user_id": "page_view", "event_type": "pa', 2),  # cut
    ]
    others = [
        dead_letter_of(b'{"event_type": "page_view", "user_id": "%s", "event_time": "x"}' % B.encode(), 3),
        dead_letter_of(b'{"event_type": "page_view", "user_id": "%s", "attrs": ' % A.encode(), 4),  # cut
        dead_letter_of(b'{"event_type": "page_view", "attrs": {"user_id": 7}}', 5),  # names nobody
        dead_letter_of(b'"page_view"', 6),
    ]
    store.insert("dead_letters", DEAD_LETTERS.columns, theirs + others, "t1")
    # Stored before dead letters had a user column: matched by the payload's parsed user_id.
    legacy_columns = [c for c in DEAD_LETTERS.columns if c != "user_id"]
    legacy = [
        tuple(value for column, value in zip(DEAD_LETTERS.columns, row, strict=True) if column != "user_id")
        for row in (
            dead_letter_of(b'{"user_id": "page_view", "event_type": "login"}', 7),
            dead_letter_of(b'{"user_id": "%s", "event_type": "page_view"}' % B.encode(), 8),
        )
    ]
    store.insert("dead_letters", legacy_columns, legacy, "t2")
    assert store.query("SELECT count() FROM dead_letters WHERE user_id = ''") == [(4,)]

    erasure = Erasure.from_wire(erasure_message(word, request_id="req-word"))
    deleted = erase_user(store, erasure_tables(store, ALL_SPECS), erasure, PSEUDONYMIZE(word))
    assert {table: rows for table, rows in deleted.items() if rows} == {"dead_letters": 3}
    assert store.query("SELECT source_offset FROM dead_letters ORDER BY source_offset") == [
        (3,),
        (4,),
        (5,),
        (6,),
        (8,),
    ]


# --- retention


def retention_settings(days: int = 90, overrides: str = "dead_letters=7,erasures=1825") -> Settings:
    return Settings.from_env({}, retention_days=days, retention_overrides=overrides)


def test_retention_sets_a_ttl_per_table_from_the_settings(store: ClickHouseStore, monkeypatch) -> None:
    applied = apply_retention(store, ALL_SPECS, retention_settings())
    expected_columns = {
        "events": "event_time",
        "user_scores": "scored_at",
        "user_scores_latest": "scored_at",
        "intervention_outcomes": "event_time",
        "tickets": "created_at",
        "api_audit": "at",
        "dead_letters": "rejected_at",
        "erasures": "completed_at",
    }
    for table, column in expected_columns.items():
        days = {"dead_letters": 7, "erasures": 1825}.get(table, 90)
        assert applied[table] == days
        assert store.table_ttl(table) == f"toDateTime({column}) + toIntervalDay({days})", table
    # Every table holding user rows has one; aggregates without users have none.
    assert all(store.table_ttl(t) for t in store.tables_with_column("user_id"))
    assert store.table_ttl("events_per_minute") is None and "events_per_minute" not in applied

    changes: list[tuple[str, str]] = []
    real_set_ttl = store.set_ttl
    monkeypatch.setattr(
        store, "set_ttl", lambda table, ttl: changes.append((table, ttl)) or real_set_ttl(table, ttl)
    )
    assert apply_retention(store, ALL_SPECS, retention_settings()) == applied and changes == []  # idempotent
    apply_retention(store, ALL_SPECS, retention_settings(overrides="dead_letters=14,erasures=1825"))
    assert changes == [("dead_letters", "toDateTime(rejected_at) + INTERVAL 14 DAY")]
    assert store.table_ttl("dead_letters") == "toDateTime(rejected_at) + toIntervalDay(14)"


def test_an_override_for_an_unknown_table_is_refused_by_name(store: ClickHouseStore) -> None:
    with pytest.raises(ValueError, match="'evnets'"):
        apply_retention(store, ALL_SPECS, retention_settings(overrides="evnets=30"))
    with pytest.raises(ValueError, match="'events_per_minute'"):  # exists, but holds no user data
        apply_retention(store, ALL_SPECS, retention_settings(overrides="events_per_minute=30"))
    with pytest.raises(ValueError, match="missing_table"):
        retention_plan(
            [TableSpec("missing_table", ("t",), EVENTS.to_row, 0, "t", None, 0)], 30, {}, {"events"}
        )
    assert store.table_ttl("events") is None  # nothing was changed by the refused runs


def test_rows_older_than_the_retention_expire(store: ClickHouseStore) -> None:
    apply_retention(store, [EVENTS, DEAD_LETTERS], retention_settings(days=30, overrides="dead_letters=7"))
    now = time.time()
    ages = {"a-40d": 40, "b-29d": 29, "c-1d": 1}
    store.insert(
        "events",
        EVENTS.columns,
        [
            EVENTS.to_row(
                orjson.dumps(Event(name, "page_view", CLICKSTREAM, now - days * 86400, B, {}).to_wire()),
                [],
                0,
                i,
            )
            for i, (name, days) in enumerate(ages.items())
        ],
        "r1",
    )
    store.insert(
        "dead_letters",
        DEAD_LETTERS.columns,
        [
            DEAD_LETTERS.to_row(
                b"x", dead_letter_headers("clickstream", 0, i, "oversized", "", now - days * 86400), 0, i
            )
            for i, days in enumerate((8, 6))
        ],
        "r2",
    )
    for table in ("events", "dead_letters"):
        store.client.command(f"OPTIMIZE TABLE {table} FINAL")
    assert store.query("SELECT event_id FROM events ORDER BY event_id") == [("b-29d",), ("c-1d",)]
    assert store.query("SELECT source_offset FROM dead_letters") == [(1,)]


# --- the sink, with a broker


def order_row(value: bytes, headers: Any, partition: int, offset: int) -> tuple[Any, ...]:
    data = orjson.loads(value)
    return (data["order_id"], data["user_id"], int(data["placed_at"]), value.decode(), partition, offset)


# A table of the kind the sink may be given: the user id in the row id, the whole message as JSON.
ORDERS = TableSpec(
    "orders_test",
    ("order_id", "user_id", "placed_at", "doc", "kafka_partition", "kafka_offset"),
    order_row,
    id_index=(1, 0),
    id_sql="concat(user_id, ':', order_id)",
    user_index=1,
    time_index=2,
)
ORDERS_DDL = (
    "CREATE TABLE orders_test (order_id String, user_id String, placed_at DateTime64(3, 'UTC'), doc String,"
    " kafka_partition UInt16, kafka_offset UInt64) ENGINE = ReplacingMergeTree ORDER BY (user_id, order_id)",
    "CREATE MATERIALIZED VIEW sink_offsets_orders_test_mv TO sink_offsets AS SELECT 'orders_test' AS"
    " table_name, kafka_partition, max(kafka_offset) AS max_offset FROM orders_test GROUP BY kafka_partition",
)
SPECS = {
    "events": EVENTS,
    "interventions": INTERVENTIONS,
    "decisions": DECISIONS,
    "user_scores": SCORES,
    "dead_letters": DEAD_LETTERS,
    "orders_test": ORDERS,
}
Message = tuple[str, bytes, bytes, list[tuple[str, bytes]]]  # topic, key, value, headers


def event_message(user: str, index: int, at: float | None = None, source: str = CLICKSTREAM) -> Message:
    attrs: dict[str, Any] = {"page": "/", "shared_with": user}  # the raw id inside attrs JSON too
    event_type = "page_view"
    if source == OUTCOMES:
        attrs = {"intervention_id": f"00000000-0000-5000-8000-{index:012d}", "channel": "chat"}
        event_type = "delivered"
    event = Event(f"e{index}", event_type, source, T + index if at is None else at, user, attrs)
    return "events", user.encode(), orjson.dumps(event.to_wire()), []


def intervention_message(user: str, index: int) -> Message:
    intervention = Intervention(
        f"00000000-0000-5000-8000-{index:012d}",
        "delay_notice",
        "notify_delay",
        user,
        T + index,
        "late",
        f"e{index}",
        {"owner": user},
    )
    return "interventions", user.encode(), orjson.dumps(intervention.to_wire(decided_at=T + index + 1)), []


def decision_message(user: str, index: int, decision: str = "emitted") -> Message:
    value = {
        "schema": 1,
        "intervention_id": f"00000000-0000-5000-8000-{index:012d}",
        "decision": decision,
        "reason": "",
        "detail": "",
        "trigger": "delay_notice",
        "action": "notify_delay",
        "channel": "chat",
        "priority": 80,
        "experiment": "",
        "arm": "",
        "offer": None,
        "user_id": user,
        "event_time": iso_time(T + index),
        "decided_at": iso_time(T + index + 1),
        "source_event_id": "",
        "order_id": "",
    }
    return "decisions", user.encode(), orjson.dumps(value), []


def score_message(user: str, index: int) -> Message:
    value = {
        "schema": 1,
        "user_id": user,
        "scored_at": iso_time(T + index),
        "event_id": f"e{index}",
        "intent": {"purchase": 0.1, "need_help": 0.2, "browse": 0.6, "leave": 0.1},
        "churn": 0.3,
        "health": 70,
        "satisfaction": None,
        "intent_examples": 5,
        "churn_examples": 3,
    }
    return "user_scores", user.encode(), orjson.dumps(value), []


def order_message(user: str, index: int) -> Message:
    value = {"order_id": f"o{index}", "user_id": user, "placed_at": round((T + index) * 1000)}
    return "orders_test", user.encode(), orjson.dumps(value), []


def dead_letter_message(payload: bytes, index: int) -> Message:
    return "dead_letters", b"", payload, dead_letter_headers("clickstream", 0, index, "malformed_json", "", T)


def user_messages(user: str, base: int) -> list[Message]:
    """Rows of ``user`` in every table: 3 events (one an outcome), 2 interventions, 3 decisions, 2
    scores, 1 order."""
    return [
        event_message(user, base + 1),
        event_message(user, base + 2),
        event_message(user, base + 3, source=OUTCOMES),
        intervention_message(user, base + 1),
        intervention_message(user, base + 2),
        decision_message(user, base + 1),
        decision_message(user, base + 2, "deferred"),
        decision_message(user, base + 2),
        score_message(user, base + 1),
        score_message(user, base + 2),
        order_message(user, base + 1),
    ]


PER_USER = {
    "events": 3,
    "intervention_outcomes": 1,
    "interventions": 2,
    "decisions": 3,
    "user_scores": 2,
    "orders_test": 1,
}


async def create_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1) for topic in SPECS] + [NewTopic("erasures", 1, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, messages: list[Message]) -> dict[TopicPartition, int]:
    """Send in order (each acknowledged before the next); returns each partition's end offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    ends: dict[TopicPartition, int] = {}
    try:
        for topic, key, value, headers in messages:
            meta = await producer.send_and_wait(topic, value=value, key=key, headers=headers)
            ends[TopicPartition(topic, meta.partition)] = meta.offset + 1
    finally:
        await producer.stop()
    return ends


async def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in SPECS for p in (0, 1)]
        return {tp: offset for tp, offset in (await consumer.end_offsets(partitions)).items() if offset}
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def until_stored(sink: ClickHouseSink, ends: dict[TopicPartition, int]) -> None:
    def stored() -> bool:
        done = sink.stored_to()
        return all(done.get(tp, 0) >= end for tp, end in ends.items() if tp.topic in SPECS)

    await eventually(stored, what=f"the sink to store up to {ends}")


def start_sink(store: ClickHouseStore, bootstrap: str) -> tuple[ClickHouseSink, asyncio.Task[None]]:
    sink = ClickHouseSink(
        store,
        SPECS,
        bootstrap_servers=[bootstrap],
        group_id="privacy-sink",
        dead_letter_topic="dead_letters",
        pseudonymize=PSEUDONYMIZE,
        erasures_topic="erasures",
        batch_rows=500,
        flush_seconds=0.2,
        max_retry_seconds=1.0,
        consumer_options={"fetch_max_wait_ms": 100, "session_timeout_ms": 3000, "heartbeat_interval_ms": 500},
        verify_end_offsets=True,  # the embedded broker reports end offsets short
    )
    return sink, asyncio.create_task(sink.run())


async def stop_sink(sink: ClickHouseSink, task: asyncio.Task[None]) -> None:
    await sink.stop()
    await asyncio.wait_for(task, 30)


def count_of(store: ClickHouseStore, table: str, user: str) -> int:
    return store.query(f"SELECT count() FROM {table} WHERE user_id = {{u:String}}", {"u": user})[0][0]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def sink_store(store: ClickHouseStore) -> ClickHouseStore:
    for statement in ORDERS_DDL:
        store.client.command(statement)
    return store


async def test_the_sink_stores_pseudonyms_only_and_still_deduplicates(broker, sink_store) -> None:
    store = sink_store
    await create_topics(broker.bootstrap)
    messages = user_messages(A, 0) + user_messages(B, 100)
    ends = await produce(broker.bootstrap, messages)
    sink, task = start_sink(store, broker.bootstrap)
    try:
        await until_stored(sink, ends)
        for table, rows in PER_USER.items():
            for user in (A, B):
                assert count_of(store, table, user) == 0, (table, user)
                assert count_of(store, table, PSEUDONYMIZE(user)) == rows, (table, user)
        assert traces(store.client, [A, B]) == {}
        assert store.query("SELECT doc FROM orders_test WHERE order_id = 'o1'") == [
            (
                orjson.dumps(
                    {"order_id": "o1", "user_id": PSEUDONYMIZE(A), "placed_at": round((T + 1) * 1000)}
                ).decode(),
            )
        ]

        # Redelivered (an upstream retry at new offsets): dropped by the same sink.
        before = metric("forewarn_sink_duplicates_total", table="user_scores")
        await until_stored(sink, await produce(broker.bootstrap, messages))
        assert metric("forewarn_sink_duplicates_total", table="user_scores") - before == 4
    finally:
        await stop_sink(sink, task)

    # And by a new sink, which knows the stored ids only from ClickHouse (pseudonymised row ids).
    sink, task = start_sink(store, broker.bootstrap)
    try:
        before = metric("forewarn_sink_duplicates_total", table="user_scores")
        await until_stored(sink, await produce(broker.bootstrap, messages))
        assert metric("forewarn_sink_duplicates_total", table="user_scores") - before == 4
    finally:
        await stop_sink(sink, task)
    for table, rows in PER_USER.items():
        assert count_of(store, table, PSEUDONYMIZE(A)) == rows, table
    assert store.query("SELECT count() FROM user_scores") == [(4,)]


async def test_an_erasure_removes_every_row_of_the_user_even_late_ones(broker, sink_store) -> None:
    store = sink_store
    alias = PSEUDONYMIZE(A)
    await create_topics(broker.bootstrap)
    ends = await produce(
        broker.bootstrap,
        user_messages(A, 0)
        + user_messages(B, 100)
        + [
            dead_letter_message(b'{"user_id": "%s", "event_type": ' % A.encode(), 1),
            dead_letter_message(b'{"user_id": "%s", "event_type": ' % B.encode(), 2),
        ],
    )
    sink, task = start_sink(store, broker.bootstrap)
    try:
        await until_stored(sink, ends)
        assert count_of(store, "user_scores_latest", alias) >= 1
        b_before = {table: count_of(store, table, PSEUDONYMIZE(B)) for table in PER_USER}

        # Rows of A produced before the erasure but consumed after it: the events partitions are held.
        events = [tp for tp in sink.consumer.assignment() if tp.topic == "events"]
        assert len(events) == 2
        sink.consumer.pause(*events)
        erased_at = time.time()
        await produce(
            broker.bootstrap,
            [
                event_message(A, 50, at=erased_at - 60),  # timed before the erasure
                event_message(A, 51, at=erased_at + 3600),  # a clock ahead: timed after it
                event_message(B, 150, at=erased_at - 60),
                ("erasures", A.encode(), b"not an erasure", []),
                ("erasures", A.encode(), erasure_message(A, erased_at=erased_at), []),
            ],
        )
        await eventually(lambda: sink.erased.drops(alias, 0), what="the erasure to be read")
        await asyncio.sleep(1.5)  # several flushes and progress checks
        assert len(sink.erasures) == 1  # the unreadable one is done; the real one waits for events
        assert store.query("SELECT count() FROM erasures") == [(0,)]
        assert count_of(store, "decisions", alias) == PER_USER["decisions"]

        dropped = metric("forewarn_sink_erased_rows_dropped_total", table="events")
        sink.consumer.resume(*events)
        await eventually(
            lambda: store.query("SELECT count() FROM erasures") == [(1,)], what="the erasure to be done"
        )
        assert len(sink.erasures) == 0
        # The commit follows the audit row: wait for it rather than race it.
        deadline = time.monotonic() + 30
        while await sink.consumer.committed(TopicPartition("erasures", 0)) != 2:
            assert time.monotonic() < deadline, "the erasure's offset was never committed"
            await asyncio.sleep(0.05)
        assert metric("forewarn_sink_erased_rows_dropped_total", table="events") - dropped == 1
        await until_stored(sink, await end_offsets(broker.bootstrap))  # incl. the erasure's dead letter
    finally:
        await stop_sink(sink, task)

    # No trace of A: neither the raw id nor the pseudonym, in any column of any table.
    assert traces(store.client, [A, alias]) == {}
    # B is untouched (plus its late event), B's dead letter too.
    b_after = {table: count_of(store, table, PSEUDONYMIZE(B)) for table in PER_USER}
    assert b_after == {**b_before, "events": b_before["events"] + 1}
    assert set(traces(store.client, [B])) == {"dead_letters.payload"}
    assert store.query("SELECT reason FROM dead_letters WHERE position(payload, 'not an') > 0") == [
        ("unreadable_erasures",)
    ]
    [(request_id, by, removed, counts)] = store.query(
        "SELECT request_id, requested_by, state_removed, rows_deleted FROM erasures FINAL"
    )
    assert (request_id, by, removed) == ("req-1", "dpo", 1)
    # Rows of user_scores_latest: one per score inserted, fewer once ClickHouse merged them.
    assert 1 <= counts.pop("user_scores_latest") <= 2
    # Tables this sink was not given but that have a user_id column are searched too (none of A's).
    assert {"tickets", "api_audit"} <= {table for table, rows in counts.items() if rows == 0}
    assert {table: rows for table, rows in counts.items() if rows} == {
        "events": PER_USER["events"] + 1,  # the late event timed after the erasure; the other was dropped
        "interventions": 2,
        "decisions": 3,
        "user_scores": 2,
        "orders_test": 1,
        "intervention_outcomes": 1,
        "dead_letters": 1,
    }

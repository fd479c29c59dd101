"""End to end through a real broker: clickstream and logistics in, interventions, dead letters and
ClickHouse rows out. ClickHouse is the embedded engine (chdb) or a real server over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.contracts.deadletters import read_dead_letter_headers
from streams.tools.worker_launcher import WorkerProcess
from tests.support.faults import committed_through_end
from tests.support.harness import (
    StartWorker,
    consume_all,
    consume_events,
    event_bytes,
    metric,
    produce,
    pseudonyms,
    rows,
    until,
    worker_env,
)
from tests.support.scenario import add_broken_messages, build

pytestmark = pytest.mark.integration


@pytest.fixture(params=["chdb", "http"])
def clickhouse_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "chdb":
        yield f"chdb://{tmp_path / 'clickhouse'}"
        return
    yield request.getfixturevalue("clickhouse_server").url


SINK_TOPICS = ("forewarn-events", "interventions")  # the topics the restarted worker's sink must have stored


def sink_rows(worker: WorkerProcess, table: str) -> float:
    """The rows the worker's sink stored in ``table`` since it started."""
    return metric(worker.metrics(), "forewarn_sink_rows_total", table=table)


def interventions_by_id(messages: list) -> dict[str, dict]:
    return {orjson.loads(m.value)["intervention_id"]: orjson.loads(m.value) for m in messages}


def test_interventions_and_rows_end_to_end(
    broker, tmp_path: Path, clickhouse_dsn: str, start_worker: StartWorker
) -> None:
    now_ms = int(time.time() * 1000)
    scenario = build(users=40, start_ms=now_ms)
    add_broken_messages(scenario, now_ms)
    worker = start_worker(worker_env(broker.bootstrap, tmp_path, clickhouse_dsn, dwell="2s"))
    try:
        asyncio.run(produce(broker.bootstrap, scenario.messages))
        emitted = asyncio.run(consume_all(broker.bootstrap, "interventions", until=len(scenario.expected)))
        # Every row the checks below count stored before the stop (polled, not slept: the sink flushes
        # every 0.5 s).
        stored = {"events": scenario.valid, "interventions": 20, "dead_letters": len(scenario.broken)}
        until(lambda: all(sink_rows(worker, t) >= n for t, n in stored.items()), 30, "the rows stored")
        metrics = worker.metrics()
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]

    # Exactly the expected interventions, each once, with the documented fields.
    assert sorted(m.value for m in emitted) == sorted(set(m.value for m in emitted))
    found = interventions_by_id(emitted)
    assert {i: (v["trigger"], v["user_id"]) for i, v in found.items()} == scenario.expected
    assert len(emitted) == len(scenario.expected) == 20
    for intervention in found.values():
        assert intervention["schema"] == 1 and intervention["event_time"].endswith("Z")
        assert intervention["reason"] and intervention["evidence"]
    delay = next(v for v in found.values() if v["trigger"] == "delay_notice")
    assert delay["evidence"]["slip_seconds"] == 3 * 3600 and delay["evidence"]["status"] == "delayed"

    assert 'forewarn_interventions_total{trigger="payment_assist"} 10.0' in metrics
    assert 'forewarn_dead_letters_total{reason="oversized"} 1.0' in metrics

    # ClickHouse holds every valid event, intervention and dead letter exactly once (no FINAL needed).
    assert rows(clickhouse_dsn, "SELECT count(), uniqExact(event_id) FROM events") == [(scenario.valid,) * 2]
    # ClickHouse holds pseudonyms of the user ids, never the ids (streams.contracts.privacy).
    stored = rows(clickhouse_dsn, "SELECT toString(intervention_id), trigger, user_id FROM interventions")
    pseudonym = pseudonyms(tmp_path)
    expected = {i: (trigger, pseudonym(user)) for i, (trigger, user) in scenario.expected.items()}
    assert {i: (t, u) for i, t, u in stored} == expected and len(stored) == 20
    dead = rows(clickhouse_dsn, "SELECT reason, count() FROM dead_letters GROUP BY reason")
    assert dict(dead) == Counter(scenario.broken.values())
    # The per-minute aggregates are kept by ClickHouse's materialized views.
    assert rows(clickhouse_dsn, "SELECT sum(events) FROM events_per_minute") == [(scenario.valid,)]
    assert dict(
        rows(
            clickhouse_dsn,
            "SELECT trigger, sum(interventions) FROM interventions_per_minute GROUP BY trigger",
        )
    ) == {"payment_assist": 10, "delay_notice": 10}
    assert rows(clickhouse_dsn, "SELECT sum(dead_letters) FROM dead_letters_per_minute") == [(8,)]


def test_bad_input_is_dead_lettered_and_good_input_kept(
    broker, tmp_path: Path, start_worker: StartWorker
) -> None:
    now_ms = int(time.time() * 1000)
    scenario = build(users=8, start_ms=now_ms, tag="b")
    add_broken_messages(scenario, now_ms)
    # Interleave: broken messages between valid ones, in both topics.
    mixed = []
    broken = [m for m in scenario.messages if m[1] == b"broken"]
    valid = [m for m in scenario.messages if m[1] != b"broken"]
    for index, message in enumerate(valid):
        mixed.append(message)
        if index % 3 == 0 and broken:
            mixed.append(broken.pop())
    mixed.extend(broken)
    worker = start_worker(worker_env(broker.bootstrap, tmp_path, dwell="2s"))
    try:
        asyncio.run(produce(broker.bootstrap, mixed))
        dead = asyncio.run(consume_all(broker.bootstrap, "dead_letters", until=len(scenario.broken)))
        accepted = asyncio.run(consume_events(broker.bootstrap, until=scenario.valid))
        emitted = asyncio.run(consume_all(broker.bootstrap, "interventions", until=len(scenario.expected)))
        assert worker.process is not None and worker.process.poll() is None  # it kept going
        # One event more, and a graceful stop as soon as it is through: the stop commits it (no
        # commit interval has passed since), and everything before it.
        tracked = metric(worker.metrics(), "forewarn_event_processing_seconds_count")
        last = event_bytes(
            event_id="last",
            event_type="page_view",
            event_time=now_ms,
            user_id="last",
            session_id="s",
            page="/",
        )
        asyncio.run(produce(broker.bootstrap, [("clickstream", b"last", last)]))
        until(
            lambda: metric(worker.metrics(), "forewarn_event_processing_seconds_count") > tracked,
            30,
            "the last event through",
        )
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    assert asyncio.run(committed_through_end(broker.bootstrap, "forewarn", ("clickstream", "logistics")))
    assert asyncio.run(committed_through_end(broker.bootstrap, "forewarn", ("forewarn-events",)))

    # Every broken message, byte for byte, with its reason; none twice.
    assert {m.value: read_dead_letter_headers(m.headers).reason for m in dead} == scenario.broken
    assert len(dead) == len(scenario.broken)
    for message in dead:
        info = read_dead_letter_headers(message.headers)
        assert info.source_topic in ("clickstream", "logistics") and info.source_offset >= 0 and info.detail
    # Every valid event accepted once, and every expected intervention emitted.
    assert sorted(event["event_id"] for event in accepted) == sorted(
        orjson.loads(v)["event_id"] for _, k, v in scenario.messages if k != b"broken"
    )
    assert set(interventions_by_id(emitted)) == set(scenario.expected)


def test_restart_recovers_state_without_duplicates(broker, tmp_path: Path, start_worker: StartWorker) -> None:
    """Stop the worker mid-stream and start it again: table state comes back from the changelog, no
    intervention is emitted twice and no row is stored twice."""
    env = worker_env(broker.bootstrap, tmp_path, dwell="6s")
    log = tmp_path / "worker.log"
    now_ms = int(time.time() * 1000)
    first = build(users=400, start_ms=now_ms, tag="r1")
    second = build(users=400, start_ms=now_ms + 1000, tag="r2")
    # Users who reached the payment page before the stop and never send anything again: only the
    # recovered table state can produce their payment_assist after the restart.
    silent = build(users=8, start_ms=now_ms, tag="r3")
    silent_lingerers = {i for i, (t, _) in silent.expected.items() if t == "payment_assist"}

    worker = start_worker(env, log)
    try:
        asyncio.run(produce(broker.bootstrap, silent.messages + first.messages))
        # Stop while the first half is still being processed.
        asyncio.run(consume_all(broker.bootstrap, "interventions", until=5, timeout=30, settle=0))
    finally:
        worker.stop()
    before = asyncio.run(consume_all(broker.bootstrap, "interventions", timeout=1.5))
    assert not silent_lingerers & set(interventions_by_id(before)), "stopped before their dwell fell due"

    asyncio.run(produce(broker.bootstrap, second.messages))
    worker = start_worker(env, log)
    expected = {**first.expected, **second.expected, **silent.expected}
    try:
        emitted = asyncio.run(consume_all(broker.bootstrap, "interventions", until=len(expected), timeout=60))
        # Events that lead to no intervention may still be on their way to the sink (which flushes
        # every 0.5 s): wait until the sink has committed through the end of both topics (it commits
        # only what it stored) before the stop, which stores and commits only what arrived.
        until(
            lambda: asyncio.run(committed_through_end(broker.bootstrap, "forewarn-sink", SINK_TOPICS)),
            30,
            "the sink to store every event and intervention",
        )
    finally:
        assert worker.stop() == 0

    ids = [orjson.loads(m.value)["intervention_id"] for m in emitted]
    assert len(ids) == len(set(ids)), "an intervention was emitted twice"
    missing = {expected[i] for i in set(expected) - set(ids)}
    found = interventions_by_id(emitted)
    unexpected = [found[i] for i in set(ids) - set(expected)]
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
    valid = first.valid + second.valid + silent.valid
    dsn = env["FOREWARN_CLICKHOUSE_DSN"]
    assert rows(dsn, "SELECT count(), uniqExact(event_id) FROM events") == [(valid, valid)]
    assert rows(dsn, "SELECT count(), uniqExact(intervention_id) FROM interventions") == [
        (len(expected),) * 2
    ]
    assert rows(dsn, "SELECT sum(events) FROM events_per_minute") == [(valid,)]

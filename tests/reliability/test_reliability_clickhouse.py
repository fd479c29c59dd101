"""ClickHouse away for a while: the pipeline goes on, the sink waits with bounded memory, and once
ClickHouse is back every row is stored exactly once.

A real ClickHouse server over HTTP (:mod:`clickhouse_server`) is stopped by PID while a worker is
busy, and started again on the same port over the same data directory. While it is away:

* the worker keeps deciding: the interventions of the traffic sent meanwhile reach the topic;
* the sink retries the batch it was storing with exponential back-off (each failure counted by
  ``forewarn_sink_insert_failures_total`` and logged); it gathers at most one more batch and then takes
  nothing more from Kafka, so it holds at most ``2 * FOREWARN_SINK_BATCH_ROWS`` rows
  (``forewarn_sink_pending_rows``, sampled all along), and the worker's resident memory does not grow
  with what waits in Kafka: a second flood of large dead letters (20 MB), sent once the sink is
  stuck, leaves the worker's RSS where it was;
* after the restart, every table holds exactly the ids its topic carries, each once (counted without
  ``FINAL``), and the worker never stopped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from sinks.clickhouse import ClickHouseStore
from sinks.consumer import ClickHouseSink
from sinks.rows import EVENTS, TableSpec, sink_specs
from streams.contracts.deadletters import dead_letter_headers
from streams.contracts.events import CLICKSTREAM, Event
from streams.contracts.privacy import Pseudonymizer, pseudonymize_row
from streams.contracts.settings import Settings
from streams.tools.clickhouse_server import ClickHouseServer, start_clickhouse_server
from streams.tools.worker_launcher import WorkerProcess
from tests.support.harness import produce, pseudonyms, read_until, worker_env
from tests.support.reliability import FaultRun, record
from tests.support.scenario import add_broken_messages, build

pytestmark = pytest.mark.integration

BATCH_ROWS = 2000  # FOREWARN_SINK_BATCH_ROWS: the sink holds two batches at most
MAX_RETRY_SECONDS = 0.5  # FOREWARN_SINK_MAX_RETRY_SECONDS: the back-off's cap
FLOOD_MESSAGES = 5_000  # dead letters sent twice while ClickHouse is away ...
FLOOD_PAYLOAD = 4096  # ... of this many bytes each: 2 x 20 MB waiting in Kafka


@dataclass
class Sample:
    at: float
    rss_bytes: int
    pending_rows: float
    insert_failures: float


@dataclass
class Sampler:
    """The worker's resident memory and sink gauges, every 0.1 s, in a thread."""

    worker: WorkerProcess
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.samples.append(self.take())
            except OSError:
                continue  # a scrape during a hiccup: the next one counts

    def take(self) -> Sample:
        values = metric_values(self.worker.metrics())
        return Sample(
            time.monotonic(),
            rss_bytes(self.worker.pid),
            values.get("forewarn_sink_pending_rows", 0.0),
            sum(v for k, v in values.items() if k.startswith("forewarn_sink_insert_failures_total")),
        )

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


def metric_values(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of every sample in a Prometheus exposition."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def rss_bytes(pid: int | None) -> int:
    """VmRSS of ``pid`` from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for {pid}")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def count(url: str, sql: str) -> int:
    client = clickhouse_connect.get_client(dsn=url)
    try:
        return int(client.query(sql).result_rows[0][0])
    finally:
        client.close()


def flood(start_offset: int) -> list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]:
    """Dead letters as ingest writes them, each of a distinct source offset (so a distinct row id)."""
    payload = b"x" * FLOOD_PAYLOAD
    return [
        (
            "dead_letters",
            b"flood",
            payload,
            dead_letter_headers("outage-flood", 0, start_offset + i, "malformed_json", "flood", time.time()),
        )
        for i in range(FLOOD_MESSAGES)
    ]


async def produce_with_headers_async(bootstrap: str, messages: list[tuple[str, bytes, bytes, list]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, headers=headers)
            for topic, key, value, headers in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topics(bootstrap: str, topics: list[str], timeout: float = 30.0) -> dict[str, list]:
    """Every message of ``topics``, each partition up to its high watermark."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        existing = await consumer.topics()  # also loads the topics' metadata
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in existing
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        found: dict[str, list] = {topic: [] for topic in topics}
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        read_to = dict.fromkeys(partitions, 0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for tp, batch in (await consumer.getmany(timeout_ms=200)).items():
                found[tp.topic].extend(batch)
                read_to[tp] = batch[-1].offset + 1
            ends = {tp: consumer.highwater(tp) for tp in partitions}
            if all(end is not None and read_to[tp] >= end for tp, end in ends.items()):
                return found
        raise AssertionError(f"could not read {topics} to their ends")
    finally:
        await consumer.stop()


def ids_in(client: Any, spec: TableSpec) -> list[str]:
    """The row ids ``spec``'s table holds, one per row (no FINAL: a row stored twice shows twice)."""
    return [row[0] for row in client.query(f"SELECT {spec.id_sql} FROM {spec.table}").result_rows]


def topic_ids(spec: TableSpec, messages: list, pseudonymize: Callable[[str], str]) -> set[str]:
    """The row ids the sink must store for ``messages``: as it computes them (after pseudonyms)."""
    ids = set()
    for message in messages:
        args = (message.value, message.headers, message.partition, message.offset)
        for row in spec.to_rows(*args)[0] if spec.to_rows is not None else [spec.to_row(*args)]:
            if spec.user_index is not None:
                row = pseudonymize_row(row, spec.user_index, pseudonymize)
            ids.add(spec.row_id(row))
    return ids


@pytest.fixture
def servers() -> Iterator[list[ClickHouseServer]]:
    """The ClickHouse servers a test starts, each stopped by PID at its end, whatever happened."""
    started: list[ClickHouseServer] = []
    yield started
    for server in started:
        server.stop()


def test_clickhouse_outage_keeps_the_pipeline_going_and_loses_nothing(
    broker, tmp_path: Path, servers: list[ClickHouseServer]
) -> None:
    server = start_clickhouse_server(tmp_path / "clickhouse-server")
    servers.append(server)
    port = server.port
    env = worker_env(
        broker.bootstrap,
        tmp_path,
        server.url,
        FOREWARN_SINK_BATCH_ROWS=str(BATCH_ROWS),
        FOREWARN_SINK_MAX_RETRY_SECONDS=str(MAX_RETRY_SECONDS),
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    sampler = Sampler(worker)
    now_ms = int(time.time() * 1000)
    before = build(users=40, start_ms=now_ms, tag="before")
    add_broken_messages(before, now_ms)
    during = build(users=120, start_ms=now_ms, tag="during")
    first_flood, second_flood = flood(0), flood(FLOOD_MESSAGES)
    try:
        worker.start()
        sampler.start()
        # ClickHouse up: the first traffic is stored.
        asyncio.run(produce(broker.bootstrap, before.messages))
        wait_for(
            lambda: count(server.url, "SELECT count() FROM events") == before.valid, 30, "the first events"
        )

        # ClickHouse away: traffic and a flood of dead letters go on.
        server.stop()
        down_at = time.monotonic()
        asyncio.run(produce_with_headers_async(broker.bootstrap, first_flood))
        asyncio.run(produce(broker.bootstrap, during.messages))
        expected = set(before.expected) | set(during.expected)
        emitted = asyncio.run(
            read_until(
                broker.bootstrap,
                "interventions",
                lambda ms: {orjson.loads(m.value)["intervention_id"] for m in ms} >= expected,
                timeout=30,
            )
        )
        emitted_while_down = {orjson.loads(m.value)["intervention_id"] for m in emitted}
        # The sink is stuck on its batch; another 20 MB for it arrives and must stay in Kafka.
        stuck = sampler.take()
        asyncio.run(produce_with_headers_async(broker.bootstrap, second_flood))
        flooded = sampler.take().insert_failures
        wait_for(lambda: sampler.take().insert_failures >= flooded + 3, 30, "three more retries")
        settled = sampler.take()
        assert worker.running(), worker.log_text()[-3000:]
        up_at = time.monotonic()
        while_down = sampler.between(down_at, up_at)

        # ClickHouse back, on the same port over the same data.
        server = start_clickhouse_server(tmp_path / "clickhouse-server", port=port)
        servers.append(server)
        assert server.port == port
        dead_expected = len(before.broken) + 2 * FLOOD_MESSAGES
        wait_for(
            lambda: (
                count(server.url, "SELECT count() FROM events") == before.valid + during.valid
                and count(server.url, "SELECT count() FROM dead_letters") == dead_expected
                and count(server.url, "SELECT count() FROM interventions") == len(expected)
            ),
            60,
            "every row after the restart",
        )
        stored_at = time.monotonic()
        sampler.stop()
        final = sampler.take()
    finally:
        sampler.stop()
        exit_code = worker.stop()
        log_text = worker.log_text()
    # The pipeline kept deciding while ClickHouse was away: every intervention reached the topic.
    assert emitted_while_down >= expected and len(during.expected) == 60
    assert exit_code == 0 and "Traceback" not in log_text, log_text[-3000:]

    # The sink retried, with back-off, and said so.
    failures = final.insert_failures
    outage = up_at - down_at
    assert failures >= 3 and "failed" in log_text and "retrying in" in log_text
    # 0.1 s doubling up to the cap: about log2(cap / 0.1) + outage / cap attempts, not hundreds.
    assert failures <= 6 + outage / MAX_RETRY_SECONDS, (failures, outage)

    # Bounded memory: the sink held two batches at most; the flood waited in Kafka, not in the worker.
    assert len(while_down) >= 20, "too few samples during the outage"
    peak_rows = max(s.pending_rows for s in while_down)
    assert 0 < peak_rows <= 2 * BATCH_ROWS, peak_rows
    rss_growth = max(s.rss_bytes for s in while_down) - while_down[0].rss_bytes
    flood_bytes = FLOOD_MESSAGES * FLOOD_PAYLOAD
    # Had the sink taken the second flood, it would hold at least its bytes again.
    late_growth = settled.rss_bytes - stuck.rss_bytes
    assert late_growth < flood_bytes / 2, (late_growth, flood_bytes)

    # Exactly once: every table holds each id of its topic once, nothing else (no FINAL).
    settings = Settings.from_env(env)
    pseudonymize = pseudonyms(tmp_path)
    server_client = clickhouse_connect.get_client(dsn=server.url)
    lost = duplicates = stored_rows = 0
    checked: dict[str, int] = {}
    specs = sink_specs(settings)
    topics = asyncio.run(read_topics(broker.bootstrap, list(specs)))
    for topic, spec in specs.items():
        wanted = topic_ids(spec, topics[topic], pseudonymize)
        stored = ids_in(server_client, spec)
        lost += len(wanted - set(stored))
        duplicates += len(stored) - len(set(stored))
        stored_rows += len(stored)
        assert set(stored) == wanted and len(stored) == len(wanted), spec.table
        checked[spec.table] = len(stored)
    server_client.close()
    assert checked["events"] == before.valid + during.valid
    assert checked["interventions"] == len(expected) and checked["decisions"] >= len(expected)
    assert checked["dead_letters"] == dead_expected

    record(
        FaultRun(
            scenario="ClickHouse server stopped mid-stream, restarted on the same data",
            faults=f"ClickHouse down {outage:.0f}s (stopped by PID, restarted on its port)",
            events_pushed=len(before.messages) + len(during.messages) + 2 * FLOOD_MESSAGES,
            faults_injected=1,
            events_lost=lost,
            duplicates_downstream=duplicates,
            notes=(
                f"{len(during.expected)} interventions emitted while down; sink held {peak_rows:.0f} rows at"
                f" most (bound {2 * BATCH_ROWS}); worker RSS +{rss_growth / 2**20:.1f} MB over the outage,"
                f" {late_growth / 2**20:+.1f} MB while {flood_bytes / 2**20:.0f} MB more waited in Kafka;"
                f" {failures:.0f} failed inserts retried;"
                f" {stored_rows} rows stored once, {stored_at - up_at:.1f}s after the restart"
            ),
        )
    )


# --- longer than the consumer's max poll interval, in-process


async def test_an_outage_longer_than_max_poll_interval_keeps_the_sink_in_its_group(
    broker, tmp_path: Path, caplog: pytest.LogCaptureFixture, servers: list[ClickHouseServer]
) -> None:
    """aiokafka makes a consumer that has not polled for ``max_poll_interval_ms`` (5 minutes by default,
    1 s here) leave its group. The sink polls with its partitions paused while it backs off, so a long
    outage moves no partition and its commit afterwards succeeds; the rows are stored once."""
    caplog.set_level(logging.INFO, logger="sinks.consumer")
    server = start_clickhouse_server(tmp_path / "clickhouse-server")
    servers.append(server)
    store = ClickHouseStore(server.url)
    store.apply_schema()
    pseudonymize = Pseudonymizer(b"a key for the outage test")
    sink = ClickHouseSink(
        store,
        {"events": EVENTS},
        bootstrap_servers=[broker.bootstrap],
        group_id="outage-sink",
        dead_letter_topic="dead_letters",
        pseudonymize=pseudonymize,
        batch_rows=100,
        flush_seconds=0.2,
        max_retry_seconds=0.5,
        consumer_options={
            "fetch_max_wait_ms": 100,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 500,
            "rebalance_timeout_ms": 1000,
            "max_poll_interval_ms": 1000,
        },
    )
    events = [
        Event(f"e{i}", "page_view", CLICKSTREAM, time.time(), f"u{i % 7}", {"page": "/"}) for i in range(150)
    ]
    messages = [("events", e.user_id.encode(), orjson.dumps(e.to_wire()), []) for e in events]
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("events", 2, 1)])
    finally:
        await admin.close()
    task = asyncio.create_task(sink.run())
    outage = 0.0
    try:
        await async_wait_for(lambda: "ClickHouse sink assigned" in caplog.text, 30, "the sink's partitions")
        await produce_with_headers_async(broker.bootstrap, messages[:50])
        await async_wait_for(lambda: sum(sink.stored_to().values()) >= 50, 30, "the first rows")
        failures_before = insert_failures("events")
        server.stop()
        down_at = time.monotonic()
        await produce_with_headers_async(broker.bootstrap, messages[50:120])
        await asyncio.sleep(2.5)  # 2.5 x max_poll_interval_ms without taking anything
        assert insert_failures("events") - failures_before >= 3  # it was retrying, not taking
        server = start_clickhouse_server(tmp_path / "clickhouse-server", port=server.port)
        servers.append(server)
        outage = time.monotonic() - down_at
        await produce_with_headers_async(broker.bootstrap, messages[120:])
        await async_wait_for(lambda: sum(sink.stored_to().values()) >= len(messages), 30, "every row stored")
        assert sink.consumer is not None
        # The commit follows the store of the last rows: polled, not read at once (it may still be on
        # its way).
        deadline = time.monotonic() + 30
        while True:
            committed = [await sink.consumer.committed(TopicPartition("events", p)) for p in (0, 1)]
            if sum(offset or 0 for offset in committed) >= len(messages) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        await sink.stop()
        await asyncio.wait_for(task, 30)
        store.close()
    # One assignment: the sink never left its group, and its commit after the outage went through.
    assert caplog.text.count("ClickHouse sink assigned") == 1, caplog.text[-3000:]
    assert "sink commit failed" not in caplog.text
    assert sum(offset or 0 for offset in committed) == len(messages)
    reader = ClickHouseStore(server.url)
    stored = [row[0] for row in reader.query("SELECT event_id FROM events")]
    reader.close()
    assert sorted(stored) == sorted(e.event_id for e in events)
    record(
        FaultRun(
            scenario="ClickHouse away longer than the sink consumer's max poll interval (in-process sink)",
            faults=f"ClickHouse down {outage:.1f}s, max_poll_interval 1s",
            events_pushed=len(messages),
            faults_injected=1,
            events_lost=len({e.event_id for e in events} - set(stored)),
            duplicates_downstream=len(stored) - len(set(stored)),
            notes="the sink kept its group membership (one assignment) and committed after the outage",
        )
    )


def insert_failures(table: str) -> float:
    return REGISTRY.get_sample_value("forewarn_sink_insert_failures_total", {"table": table}) or 0.0


async def async_wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)

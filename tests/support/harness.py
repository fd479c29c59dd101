"""What the integration tests share: a worker run as a real ``forewarn worker`` process
(:class:`streams.tools.worker_launcher.WorkerProcess`), and plain aiokafka clients to feed it and read what it
emits. Every process started here is stopped by PID."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.contracts.privacy import Pseudonymizer
from streams.tools.worker_launcher import EMBEDDED_BROKER_ENV, WorkerProcess, send_everything_policy

StartWorker = Callable[..., WorkerProcess]
"""The ``start_worker`` fixture (tests/conftest.py): ``start_worker(env)`` is a started worker."""


def worker_env(
    bootstrap: str,
    workdir: Path,
    clickhouse_dsn: str | None = None,
    *,
    dwell: str = "2s",
    policy: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """A worker's settings; ``policy`` (TOML) replaces the send-everything policy override."""
    policy_file = workdir / "policy.toml"
    policy_file.write_text(send_everything_policy(dwell) if policy is None else policy)
    return {
        "FOREWARN_BROKER_URL": f"kafka://{bootstrap}",
        "FOREWARN_CLICKHOUSE_DSN": clickhouse_dsn or f"chdb://{workdir / 'clickhouse'}",
        "FOREWARN_DATA_DIR": str(workdir / "worker"),
        "FOREWARN_PSEUDONYM_KEY_FILE": str(workdir / "pseudonym.key"),
        "FOREWARN_CLUSTER_SECRET_FILE": str(workdir / "cluster.key"),
        "FOREWARN_PARTITIONS": "4",
        "FOREWARN_SINK_FLUSH_SECONDS": "0.5",
        "FOREWARN_SWEEP_INTERVAL_SECONDS": "0.5",
        "FOREWARN_POLICY_FILE": str(policy_file),
        **EMBEDDED_BROKER_ENV,
        **extra,
    }


def worker_group(bootstrap: str, tmp_path: Path, names: Iterable[str], **extra: str) -> list[WorkerProcess]:
    """Workers of one app (one consumer group) on ``bootstrap``, not yet started: each with its own
    directory, ports and log (``tmp_path/<name>``, ``tmp_path/worker-<name>.log``), all with one
    pseudonym key and one cluster secret, as workers of one deployment must share
    (streams.contracts.privacy)."""
    workers = []
    for name in names:
        workdir = tmp_path / name
        workdir.mkdir()
        env = worker_env(
            bootstrap,
            workdir,
            FOREWARN_PSEUDONYM_KEY=str(uuid.UUID(int=7)),
            FOREWARN_CLUSTER_SECRET=str(uuid.UUID(int=8)),
            **extra,
        )
        workers.append(WorkerProcess(env, tmp_path / f"worker-{name}.log"))
    return workers


Message = tuple[str, bytes | None, bytes | None]  # topic, key, value


def event_bytes(**fields: Any) -> bytes:
    return orjson.dumps(fields)


async def produce(bootstrap: str, messages: Iterable[Message], **options: Any) -> int:
    """Send ``messages`` and wait for all; ``options`` for the producer (``max_request_size``...)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **options)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for topic, key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(futures)


async def read_until(
    bootstrap: str, topic: str, done: Callable[[list[Any]], bool], timeout: float = 60.0
) -> list[Any]:
    """Every message on ``topic`` from the start, as soon as ``done(messages)`` (or at ``timeout``)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(messages) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                messages.extend(batch)
    finally:
        await consumer.stop()
    return messages


async def consume_all(
    bootstrap: str, topic: str, *, until: int | None = None, timeout: float = 30.0, settle: float = 1.0
) -> list[Any]:
    """Every message on ``topic`` from the start: until ``until`` messages, then ``settle`` seconds
    more to catch any extra (duplicates), or until ``timeout``."""
    reached: list[float] = []  # when ``until`` messages were first there

    def settled(messages: list[Any]) -> bool:
        if until is None or len(messages) < until:
            return False
        reached[:1] = reached[:1] or [time.monotonic()]
        return time.monotonic() - reached[0] >= settle

    return await read_until(bootstrap, topic, settled, timeout)


def envelope_events(messages: list[Any]) -> list[dict[str, Any]]:
    """The events of ``forewarn-events`` messages in order: each message an envelope of events
    (:mod:`streams.contracts.envelopes`), or one event."""
    events: list[dict[str, Any]] = []
    for message in messages:
        data = orjson.loads(message.value)
        events.extend(data["events"] if "envelope" in data else [data])
    return events


async def consume_events(
    bootstrap: str, *, until: int, timeout: float = 30.0, settle: float = 1.0
) -> list[dict[str, Any]]:
    """Every event on ``forewarn-events`` from the start (:func:`envelope_events`): until ``until``
    events, then ``settle`` seconds more to catch any extra (duplicates), or until ``timeout``."""
    reached: list[float] = []

    def settled(messages: list[Any]) -> bool:
        if len(envelope_events(messages)) < until:
            return False
        reached[:1] = reached[:1] or [time.monotonic()]
        return time.monotonic() - reached[0] >= settle

    return envelope_events(await read_until(bootstrap, "forewarn-events", settled, timeout))


def events_seen(port: int, user: str, token: str) -> int | None:
    """The user's ``events_seen`` as the CRM/ERP API of the worker on ``port`` answers it with the
    bearer ``token`` (None: not now: 404 before their first event, 503 during a rebalance, or the
    worker is away)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/users/{user}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())["state"]["events_seen"]
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return None


def metric(text: str, name: str, **labels: str) -> float:
    """A sample of a worker's Prometheus text (:meth:`WorkerProcess.metrics`) by name and labels; 0 when
    absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """``check()`` once it is truthy, polled every 0.3 s; fails the test at ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return result


# What a worker holds of the user table: the events topic's partitions it consumes (active), and the
# table's changelog partitions it keeps for a takeover (standby).
USER_TABLE_TOPICS = {"active": "forewarn-events", "standby": "forewarn-users-changelog"}


def assigned(worker: WorkerProcess, role: str) -> set[int]:
    """The user-table partitions ``worker`` holds as ``role`` (active or standby), from its metrics."""
    held = set()
    for line in worker.metrics().splitlines():
        if line.startswith("forewarn_assigned_partitions{") and line.endswith(" 1.0"):
            labels = dict(
                part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            if (labels["topic"], labels["role"]) == (f'"{USER_TABLE_TOPICS[role]}"', f'"{role}"'):
                held.add(int(labels["partition"].strip('"')))
    return held


def pseudonyms(workdir: Path) -> Pseudonymizer:
    """The pseudonyms ClickHouse holds for the user ids of the workers set up by :func:`worker_env`."""
    return Pseudonymizer((workdir / "pseudonym.key").read_text().strip().encode())


def rows(dsn: str, sql: str) -> list[tuple]:
    """The rows of a query against the ClickHouse at ``dsn`` (after the worker writing it stopped, for
    an embedded one)."""
    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        return client.query(sql).result_rows
    finally:
        client.close()


def traces(client: Any, needles: Iterable[str]) -> dict[str, int]:
    """Where any of ``needles`` (a raw user id, its pseudonym) still shows in the database of
    ``client`` (a clickhouse-connect client): ``{"table.column": rows}`` over every column whose type
    holds strings (String, LowCardinality, Nullable, Array, Map: read as text) of every table that
    stores rows (MergeTree engines; views hold none). Empty: no trace.

    Rows removed by a lightweight delete are already invisible here; they leave the disk when their
    part is next merged."""
    texts = [needle for needle in needles if needle]
    tables = {
        row[0]
        for row in client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
        ).result_rows
    }
    columns = client.query(
        "SELECT table, name FROM system.columns WHERE database = currentDatabase() AND type LIKE '%String%'"
        " ORDER BY table, name"
    ).result_rows
    parameters = {f"n{i}": text for i, text in enumerate(texts)}
    found: dict[str, int] = {}
    for table, column in columns:
        if table not in tables or not texts:
            continue
        condition = " OR ".join(
            f"position(toString(`{column}`), {{{name}:String}}) > 0" for name in parameters
        )
        count = client.query(
            f"SELECT count() FROM `{table}` WHERE {condition}", parameters=parameters
        ).result_rows[0][0]
        if count:
            found[f"{table}.{column}"] = int(count)
    return found

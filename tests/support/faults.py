"""Fault injection for the reliability tests (``tests/reliability/``), and readers of what the
broker holds afterwards.

* :class:`PacedTraffic` produces scripted traffic from a thread, one wave after another at a steady
  pace, while a test kills and restarts things: each wave is :func:`scenario.build`'s users (whose
  interventions are known in advance, by the contract's ids), every few waves a page view from each
  of a few "regular" users (whose state therefore spans every fault) and, now and then, one of each
  kind of broken message. It keeps the ground truth of what the broker acknowledged (:class:`Truth`).
* :class:`KafkaProxy` stands between Kafka clients and the broker (which advertises the proxy's
  address, so clients come back to it after every metadata refresh) and can cut the workers off: every
  connection is closed and new ones are refused until it is restored. The test's own clients are told
  apart by their client id and keep their connections, as producers elsewhere in a network would.
* :func:`read_topic` and :func:`committed_through_end` read what a topic holds and how far a consumer
  group has committed, up to end offsets checked by a fetch (the embedded broker reports them short:
  :mod:`streams.worker.offsets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from streams.api.auth import token_entry, tokens_file_text
from streams.contracts.interventions import DELAY_NOTICE, PAYMENT_ASSIST
from streams.domain.policy import load_policy
from streams.tools.worker_launcher import WorkerProcess, send_everything_policy
from streams.worker.offsets import verified_end_offsets
from tests.support.harness import envelope_events, rows
from tests.support.scenario import add_broken_messages, build

# The client id of every Kafka client the tests run themselves: the proxy never cuts these.
TEST_CLIENT_ID = "forewarn-reliability-test"

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something true, and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return result


# --- a worker under test

TOKEN = "reliability-read-token-5e1d7a90"  # the API token the reliability tests read state with
# Only the two triggers whose every firing the traffic's script knows: no model-driven trigger fires
# this early anyway (they wait for 500 examples), but nothing is left to chance.
POLICY = send_everything_policy("2s") + "".join(
    f"\n[triggers.{name}]\nenabled = false\n"
    for name in sorted(set(load_policy().triggers) - {PAYMENT_ASSIST, DELAY_NOTICE})
)
INPUT_TOPICS = ("clickstream", "logistics")  # what the traffic is sent to
# What the ClickHouse sink stores of the traffic's consequences.
STORED_TOPICS = ("forewarn-events", "interventions", "decisions", "user_scores", "dead_letters")


def write_tokens(path: Path) -> str:
    """A tokens file at ``path`` with :data:`TOKEN` (read scope); returns its path for the settings."""
    path.write_text(tokens_file_text([token_entry("ops", TOKEN, ["read:scores"])]))
    return str(path)


def metric_total(worker: WorkerProcess, name: str) -> float:
    """The sum of the metric ``name`` over its labels, from ``worker``'s metrics (0 if it does not
    answer)."""
    try:
        text = worker.metrics()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name}{{", f"{name} "))
    )


def interventions_emitted(worker: WorkerProcess) -> int:
    """How many interventions ``worker`` emitted since it started."""
    return int(metric_total(worker, "forewarn_interventions_total"))


def persisted_events_seen(bootstrap: str) -> dict[str, int]:
    """Every user's ``events_seen`` as the users table's changelog holds it last (what a restarted
    worker recovers)."""
    seen: dict[str, int] = {}
    for message in asyncio.run(read_topic(bootstrap, "forewarn-users-changelog")):
        if message.value is not None:
            seen[orjson.loads(message.key)] = orjson.loads(message.value)["events_seen"]
    return seen


def ids_of(messages: Iterable[Any]) -> set[str]:
    """The intervention ids of ``messages`` from the interventions topic."""
    return {orjson.loads(m.value)["intervention_id"] for m in messages}


def wait_for_interventions(bootstrap: str, expected: dict[str, tuple[str, str]], timeout: float) -> None:
    """Wait until every id of ``expected`` is on the interventions topic; on timeout, fail saying which
    are missing and what became of their users' events (accepted onto ``forewarn-events`` or not)."""
    try:
        wait_until(
            lambda: set(expected) <= ids_of(asyncio.run(read_topic(bootstrap, "interventions"))),
            timeout,
            "every expected intervention",
        )
    except AssertionError:
        missing = set(expected) - ids_of(asyncio.run(read_topic(bootstrap, "interventions")))
        users = {expected[i][1] for i in missing}
        accepted = [
            event["event_id"]
            for event in envelope_events(asyncio.run(read_topic(bootstrap, "forewarn-events")))
            if event["user_id"] in users
        ]
        raw = [
            (m.topic, m.partition, m.offset)
            for topic in INPUT_TOPICS
            for m in asyncio.run(read_topic(bootstrap, topic))
            if m.key is not None and m.key.decode() in users
        ]
        raise AssertionError(
            f"{len(missing)} interventions missing: {sorted(expected[i] for i in missing)[:10]};"
            f" their users' events accepted: {sorted(accepted)[:20]}; sent: {sorted(raw)[:20]}"
        ) from None


def group_joins(log: str, group: str) -> int:
    """How many times the worker whose ``log`` this is asked to join ``group``."""
    return len(re.findall(rf"\(Re-\)joining group {re.escape(group)}\s*$", log, re.MULTILINE))


# --- traffic with a known answer


@dataclass
class Truth:
    """What the broker acknowledged so far, and what it must lead to."""

    waves: int = 0
    messages: int = 0  # valid and broken
    broken: int = 0
    valid_ids: set[str] = field(default_factory=set)  # event ids of the valid events
    pushed: Counter[str] = field(default_factory=Counter)  # user -> valid events
    expected: dict[str, tuple[str, str]] = field(default_factory=dict)  # intervention id -> trigger, user

    @property
    def valid(self) -> int:
        return len(self.valid_ids)


def page_view(user: str, event_id: str, at_ms: int) -> tuple[str, bytes, bytes]:
    event = {
        "event_id": event_id,
        "event_type": "page_view",
        "event_time": at_ms,
        "user_id": user,
        "session_id": f"{user}-s",
        "page": "/home",
    }
    return "clickstream", user.encode(), orjson.dumps(event)


class PacedTraffic:
    """Waves of scripted traffic every ``interval`` seconds from a thread, until :meth:`stop`. Event
    times are the wall clock when the wave is sent, as live traffic's are: the payment dwell is judged
    in event time, so a backlog read after a restart is judged as it would have been live."""

    def __init__(
        self,
        bootstrap: str,
        *,
        tag: str,
        users_per_wave: int = 8,
        regulars: int = 12,
        regular_every: int = 4,
        interval: float = 0.25,
        broken_every: int = 10,
    ) -> None:
        self.bootstrap = bootstrap
        self.tag = tag
        self.users_per_wave = users_per_wave
        self.regulars = [f"{tag}-regular-{index:02d}" for index in range(regulars)]
        # A page view from each regular user every this many waves: about one a second, as a busy user
        # sends, so that what a restart delivers again stays within the few events a user's state
        # remembers (docs/architecture.md "Guarantees": each event counts once per user).
        self.regular_every = regular_every
        self.interval = interval
        self.broken_every = broken_every
        self._truth = Truth()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"traffic-{tag}", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> PacedTraffic:
        self._thread.start()
        return self

    def truth(self) -> Truth:
        """A copy of the ground truth so far."""
        with self._lock:
            truth = self._truth
            return Truth(
                truth.waves,
                truth.messages,
                truth.broken,
                set(truth.valid_ids),
                Counter(truth.pushed),
                dict(truth.expected),
            )

    def waves(self) -> int:
        with self._lock:
            return self._truth.waves

    def stop(self, timeout: float = 60.0) -> Truth:
        """Finish the wave in flight, stop, and return the ground truth. Idempotent."""
        self._stopping.set()
        if self._thread.ident is None:  # never started
            return self.truth()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the traffic producer did not stop"
        if self.error is not None:
            raise AssertionError(f"the traffic producer failed: {self.error!r}") from self.error
        return self.truth()

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as error:  # reported by stop()
            self.error = error

    async def _produce(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, client_id=TEST_CLIENT_ID
        )
        await producer.start()
        try:
            next_wave = time.monotonic()
            while not self._stopping.is_set():
                wave = self.waves()
                messages, truth = self._wave(wave, int(time.time() * 1000))
                sent = [await producer.send(topic, value=value, key=key) for topic, key, value in messages]
                await asyncio.gather(*sent)  # acknowledged by the broker (acks=all): now it counts
                with self._lock:
                    self._add(truth)
                next_wave += self.interval
                await asyncio.sleep(max(0.0, next_wave - time.monotonic()))
        finally:
            await producer.stop()

    def _wave(self, wave: int, now_ms: int) -> tuple[list[tuple[str, bytes, bytes]], Truth]:
        scenario = build(self.users_per_wave, start_ms=now_ms, tag=f"{self.tag}{wave}")
        regulars = self.regulars if wave % self.regular_every == 0 else []
        valid = scenario.messages + [page_view(user, f"{user}-{wave}", now_ms) for user in regulars]
        truth = Truth(waves=1, messages=len(valid), expected=dict(scenario.expected))
        for _, _, value in valid:
            event = orjson.loads(value)
            truth.valid_ids.add(event["event_id"])
            truth.pushed[event["user_id"]] += 1
        if not self.broken_every or wave % self.broken_every:
            return valid, truth
        broken = build(0)
        add_broken_messages(broken, now_ms)
        truth.messages += len(broken.messages)
        truth.broken = len(broken.messages)
        return valid + broken.messages, truth

    def _add(self, wave: Truth) -> None:
        truth = self._truth
        truth.waves += wave.waves
        truth.messages += wave.messages
        truth.broken += wave.broken
        truth.valid_ids |= wave.valid_ids
        truth.pushed.update(wave.pushed)
        truth.expected.update(wave.expected)


# --- what the broker holds


async def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every message of ``topic``, from the start up to its end offsets as of the call."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id=TEST_CLIENT_ID
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        ends = await verified_end_offsets(consumer, await consumer.end_offsets(partitions))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        waiting = {tp for tp in partitions if ends[tp] > 0}
        while waiting:
            assert time.monotonic() < deadline, f"{topic}: not read to its end in {timeout}s"
            for tp, batch in (await consumer.getmany(*waiting, timeout_ms=200)).items():
                messages.extend(m for m in batch if m.offset < ends[tp])
                if await consumer.position(tp) >= ends[tp]:
                    waiting.discard(tp)
        return messages
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """What ``group`` has committed on every partition of ``topics`` (0 where nothing)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, client_id=TEST_CLIENT_ID
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in consumer.partitions_for_topic(topic) or ()
        ]
        return {tp: await consumer.committed(tp) or 0 for tp in partitions}
    finally:
        await consumer.stop()


async def committed_through_end(bootstrap: str, group: str, topics: Iterable[str]) -> bool:
    """Whether ``group`` has committed every partition of ``topics`` up to its end."""
    committed = await committed_offsets(bootstrap, group, topics)
    if not committed:
        return False
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id=TEST_CLIENT_ID)
    await probe.start()
    try:
        ends = await verified_end_offsets(probe, await probe.end_offsets(list(committed)))
    finally:
        await probe.stop()
    return all(offset >= ends[tp] for tp, offset in committed.items())


# --- cutting workers off the broker


async def evict_members(bootstrap: str, group: str, protocol: str, topic: str, timeout: float = 60.0) -> None:
    """Make every member of ``group`` that cannot answer (a worker cut off the broker) lose its
    membership, as Apache Kafka does when a member's session times out: join the group (with an
    assignor named ``protocol``, the one its members use, so the broker accepts it), wait until the
    rebalance has gone through without them, and leave it empty. The embedded broker does not expire
    sessions by itself (a member silent for longer than its session timeout is still a member when it
    comes back), but it does drop members that do not rejoin a rebalance in time."""
    assigned = asyncio.Event()

    class _Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        async def on_partitions_assigned(self, partitions: Any) -> None:
            assigned.set()

    # Named as the group's own protocol; lays partitions out round robin among the members that joined.
    assignor = type("Evictor", (RoundRobinPartitionAssignor,), {"name": protocol})
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        client_id=TEST_CLIENT_ID,
        partition_assignment_strategy=(assignor,),
        # Short: the broker waits for the slowest member's rebalance timeout before it drops the silent
        # ones.
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
        rebalance_timeout_ms=1_000,
    )
    consumer.subscribe([topic], listener=_Listener())
    await consumer.start()
    try:
        await asyncio.wait_for(assigned.wait(), timeout)
    finally:
        await consumer.stop()  # leaves the group: it commits nothing (auto commit off, nothing read)


def _client_id(frame: bytes) -> str | None:
    """The client id in a Kafka request (size, api key, api version, correlation id, client id as an
    int16-length string in every request header from version 1 on); None if it has none.

    >>> _client_id(struct.pack(">ihhih", 0, 18, 3, 1, 2) + b"ab")
    'ab'
    """
    if len(frame) < 14:
        return None
    (length,) = struct.unpack_from(">h", frame, 12)
    return None if length < 0 else frame[14 : 14 + length].decode("utf-8", "replace")


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Link:
    client_id: str | None
    writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]


class KafkaProxy:
    """A TCP proxy on 127.0.0.1:``port`` to the broker on ``upstream_port``, run on a thread of its
    own. :meth:`cut` closes every connection of a client whose id is not :data:`TEST_CLIENT_ID` and
    refuses such clients (closes their connections after their first request) until :meth:`restore`.

    Start the broker advertising the proxy's address, or clients would reconnect past it."""

    def __init__(self, upstream_port: int, port: int) -> None:
        self.upstream_port = upstream_port
        self.port = port
        self.cut_connections = 0  # connections closed by cut()
        self.refused = 0  # connections refused while cut
        self._cut = False
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-proxy", daemon=True)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> KafkaProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and end the thread. Idempotent."""
        if not self._thread.is_alive():
            return
        self._call(self._close(lambda link: True, stop=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> int:
        """Cut the workers off: close their connections, refuse new ones. Returns how many were closed."""
        return self._call(self._close(lambda link: link.client_id != TEST_CLIENT_ID))

    def restore(self) -> None:
        self._cut = False

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _close(self, which: Callable[[_Link], bool], stop: bool = False) -> int:
        if stop and self._server is not None:
            self._server.close()
        self._cut = not stop
        closed = 0
        for link in [link for link in self._links if which(link)]:
            self._links.discard(link)
            for writer in link.writers:
                writer.transport.abort()  # at once, as a broken network does
            closed += 1
        self.cut_connections += 0 if stop else closed
        return closed

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            header = await reader.readexactly(4)
            body = await reader.readexactly(struct.unpack(">i", header)[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.transport.abort()
            return
        client_id = _client_id(header + body)
        if self._cut and client_id != TEST_CLIENT_ID:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(client_id, (writer, up_writer))
        self._links.add(link)
        up_writer.write(header + body)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        self._links.discard(link)
        for each in link.writers:
            each.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()  # either side gone: the whole link goes, as a TCP connection would


def check_stored_once(dsn: str, truth: Truth) -> int:
    """Assert what ClickHouse at ``dsn`` holds after a fault test: every valid event once, with FINAL
    and without, and in the per-minute view; exactly the expected interventions, once; every dead
    letter once. Returns the rows stored twice (0, asserted) for the test's figures."""
    stored_twice = 0
    for table, column in (("events", "event_id"), ("interventions", "intervention_id")):
        [(count, unique)] = rows(dsn, f"SELECT count(), uniqExact({column}) FROM {table}")
        stored_twice += count - unique
    assert stored_twice == 0
    assert {r[0] for r in rows(dsn, "SELECT event_id FROM events")} == truth.valid_ids
    assert rows(dsn, "SELECT count() FROM events FINAL") == [(truth.valid,)]
    assert rows(dsn, "SELECT sum(events) FROM events_per_minute") == [(truth.valid,)]
    stored = rows(dsn, "SELECT toString(intervention_id) FROM interventions")
    assert {r[0] for r in stored} == set(truth.expected)
    assert rows(dsn, "SELECT count() FROM dead_letters") == [(truth.broken,)]
    return stored_twice


def wait_committed_everything(bootstrap: str, timeout: float = 60.0) -> None:
    """Until the app's group has committed every input partition, and the sink's every stored topic,
    up to its end: the worker has nothing left in flight."""
    for group, topics in (("forewarn", INPUT_TOPICS), ("forewarn-sink", STORED_TOPICS)):
        wait_until(
            lambda group=group, topics=topics: asyncio.run(committed_through_end(bootstrap, group, topics)),
            timeout,
            f"{group} to commit everything",
            interval=0.5,
        )


def check_interventions(emitted: Iterable[Any], truth: Truth) -> int:
    """Assert the messages ``emitted`` on ``interventions`` are exactly the expected ids, each the
    expected trigger and user, and that an id delivered again (at least once) is the same intervention
    (only ``decided_at`` may differ). Returns how many were delivered again, for the test's figures."""
    by_id: dict[str, list[dict]] = defaultdict(list)
    for message in emitted:
        intervention = orjson.loads(message.value)
        intervention.pop("decided_at")  # when it was decided: the one field a repeat may change
        by_id[intervention["intervention_id"]].append(intervention)
    unexpected = {
        i: (c[0]["trigger"], c[0]["user_id"], c[0]["source_event_id"])
        for i, c in by_id.items()
        if i not in truth.expected
    }
    assert set(by_id) == set(truth.expected), (
        f"missing {set(truth.expected) - set(by_id)}, unexpected {unexpected}"
    )
    assert {i: (c[0]["trigger"], c[0]["user_id"]) for i, c in by_id.items()} == truth.expected
    for copies in by_id.values():
        assert all(copy == copies[0] for copy in copies), copies
    return sum(len(copies) - 1 for copies in by_id.values())


def check_events_seen(seen_live: dict[str, int | None], persisted: dict[str, int], truth: Truth) -> None:
    """Assert every user's state counted every event they sent, once: live (``seen_live``, read through
    the API) and as persisted in the users table's changelog (all users)."""
    assert seen_live == {user: truth.pushed[user] for user in seen_live}, seen_live
    wrong = {user: (persisted.get(user), n) for user, n in truth.pushed.items() if persisted.get(user) != n}
    assert not wrong, f"users whose state did not count their events once: {dict(list(wrong.items())[:5])}"

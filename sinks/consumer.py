"""The ClickHouse sink: Kafka topics to ClickHouse tables in batches, committing only what is stored.

It is its own consumer group (``<app id>-sink``) with manual commits:

1. messages are turned into rows (:mod:`sinks.rows`: one per message, or one per event of an envelope
   of ``forewarn-events``) and gathered per table until ``batch_rows`` rows
   (all tables together) or ``flush_seconds`` since the batch opened;
2. each table's batch is inserted with a deduplication token made of its offset ranges; a failed insert
   is retried with the same rows and token (exponential back-off up to ``max_retry_seconds``);
3. only then are the offsets committed.

A due batch is stored in the background while the next one is gathered; batches are sealed, and
committed, in order. The sink holds about two batches, ``2 * batch_rows`` rows, however long
ClickHouse is away (``forewarn_sink_pending_rows``), polling with its partitions paused meanwhile so
that it keeps its group. On assignment it seeks past the offsets ClickHouse already holds
(``sink_offsets``) and reloads the partition's last ``dedup_window`` row ids, so a replayed batch or a
re-processed event is stored once. A message that cannot be read as a row goes to the dead-letter
topic, never into a table. Why each of these, and what the tests show: docs/architecture.md,
"Guarantees" ("Rows are stored once", "ClickHouse may go away").

Privacy (:mod:`streams.contracts.privacy`, :mod:`sinks.erasure`): a row of a table with a user column
has its user id replaced by the keyed pseudonym before anything else is done with it (its id for
de-duplication is computed after, matching the ids ClickHouse holds), so no raw user id reaches those
tables. With ``erasures_topic`` the sink also reads the erasures the workers carried out and deletes
the user's rows from ClickHouse once no row produced before the erasure can still be on its way; the
erasure's offset is committed only after the delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from sinks.clickhouse import ClickHouseStore, batch_token
from sinks.erasure import ErasureQueue, PendingErasure, erase_user, erasure_tables, record_erasure, redact
from sinks.rows import TableSpec, UnreadableItem
from streams.contracts import metrics
from streams.contracts.deadletters import DeadLetterSender, StopRequested
from streams.contracts.erasure import ErasedUsers, Erasure
from streams.contracts.privacy import RowPseudonymizer, UserTable
from streams.worker.offsets import verified_end_offsets

log = logging.getLogger(__name__)


@dataclass
class TableBatch:
    spec: TableSpec
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    # partition -> [first offset, last offset] of the rows in this batch
    ranges: dict[int, list[int]] = field(default_factory=dict)

    def add(self, partition: int, offset: int, row: tuple[Any, ...]) -> None:
        self.add_many(partition, [row], offset, offset)

    def add_many(self, partition: int, rows: list[tuple[Any, ...]], first: int, last: int) -> None:
        """Rows of one partition, in offset order, from offset ``first`` to ``last``."""
        self.rows.extend(rows)
        span = self.ranges.get(partition)
        if span is None:
            self.ranges[partition] = [first, last]
        else:
            span[1] = last

    def token(self) -> str:
        return batch_token(self.spec.table, [(p, first, last) for p, (first, last) in self.ranges.items()])


class Batcher:
    """Pure batching state: rows per table, offsets to commit, and when a flush is due.

    >>> from sinks.rows import EVENTS
    >>> batcher = Batcher({"forewarn-events": EVENTS}, batch_rows=2, flush_seconds=1.0)
    >>> batcher.add("forewarn-events", 0, 5, ("row",), now=10.0)
    >>> batcher.due(now=10.5), batcher.due(now=11.0)
    (False, True)
    >>> batcher.add("forewarn-events", 0, 6, ("row",), now=10.6)
    >>> batcher.due(now=10.6), batcher.room(), batcher.commit_offsets()
    (True, 0, {('forewarn-events', 0): 7})

    ``batch_rows`` bounds the rows of all tables together, so it bounds the sink's memory too (the
    run loop fetches at most :meth:`room` messages; see the module's docstring).
    """

    def __init__(self, specs: dict[str, TableSpec], batch_rows: int, flush_seconds: float) -> None:
        self.specs = specs
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.tables: dict[str, TableBatch] = {}
        self.consumed: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset taken
        self.opened_at: float | None = None
        self.rows_per_message = 1.0  # what a message of the last fetch of envelopes held, on average

    def add(self, topic: str, partition: int, offset: int, row: tuple[Any, ...] | None, now: float) -> None:
        """Take one message; ``row`` None means it produced no row (skipped or dead-lettered)."""
        self.add_many(topic, partition, offset, [] if row is None else [row], offset, offset, now)

    def add_many(
        self,
        topic: str,
        partition: int,
        last: int,
        rows: list[tuple[Any, ...]],
        first_row: int,
        last_row: int,
        now: float,
    ) -> None:
        """Take the messages of a partition up to offset ``last``, which produced ``rows`` (in offset
        order, the first at offset ``first_row``, the last at ``last_row``; the other messages were
        skipped or dead-lettered): :meth:`add` for each, at once."""
        if self.opened_at is None:
            self.opened_at = now
        self.consumed[(topic, partition)] = last
        if rows:
            spec = self.specs[topic]
            batch = self.tables.get(spec.table)
            if batch is None:
                batch = self.tables[spec.table] = TableBatch(spec)
            batch.add_many(partition, rows, first_row, last_row)

    def rows(self) -> int:
        """Rows held, all tables together: at most ``batch_rows`` when fetches take no more than
        :meth:`room`."""
        return sum(len(batch.rows) for batch in self.tables.values())

    def room(self) -> int:
        """How many messages the next fetch may take without holding more than ``batch_rows`` rows: as
        many as rows, or fewer while messages hold several rows each (envelopes,
        :meth:`note_rows_per_message`).

        >>> batcher = Batcher({}, batch_rows=1000, flush_seconds=1.0)
        >>> batcher.room(), batcher.note_rows_per_message(40.0), batcher.room()
        (1000, None, 25)
        """
        left = self.batch_rows - self.rows()
        if left <= 0:
            return 0
        return max(1, int(left / self.rows_per_message))

    def note_rows_per_message(self, rows_per_message: float) -> None:
        """How many rows the messages of the last fetch of a table of envelopes held, on average: the
        next fetches are sized by it (:meth:`room`), so that the rows held stay near ``batch_rows``
        (over it by at most what one fetch holds beyond that average)."""
        self.rows_per_message = max(1.0, rows_per_message)

    def due(self, now: float) -> bool:
        if self.opened_at is None:
            return False
        return self.rows() >= self.batch_rows or now - self.opened_at >= self.flush_seconds

    def wait_seconds(self, now: float) -> float:
        """How long the next fetch may wait before a flush falls due."""
        if self.opened_at is None:
            return self.flush_seconds
        return max(0.0, self.opened_at + self.flush_seconds - now)

    def commit_offsets(self) -> dict[tuple[str, int], int]:
        return {key: offset + 1 for key, offset in self.consumed.items()}

    def clear(self) -> None:
        self.tables.clear()
        self.consumed.clear()
        self.opened_at = None

    def seal(self) -> Sealed | None:
        """Hand over what was taken (None if nothing was) and start afresh: what is taken from now on
        is neither stored nor committed with it."""
        if self.opened_at is None:
            return None
        sealed = Sealed(list(self.tables.values()), self.commit_offsets())
        self.clear()
        return sealed


@dataclass
class Sealed:
    """A batch handed over to be stored: its rows per table, and the offsets to commit once they are."""

    tables: list[TableBatch]
    offsets: dict[tuple[str, int], int]

    @property
    def rows(self) -> int:
        return sum(len(batch.rows) for batch in self.tables)


class RecentIds:
    """The last ``limit`` ids seen, for membership tests in O(1) with bounded memory.

    >>> recent = RecentIds(limit=2)
    >>> [recent.add(i) for i in ("a", "b", "a", "c")]
    [True, True, False, True]
    >>> "a" in recent, "b" in recent, "c" in recent
    (False, True, True)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def add(self, item: str) -> bool:
        """Remember ``item``; False if it was already there."""
        if item in self._ids:
            return False
        self._ids.add(item)
        self._order.append(item)
        if len(self._order) > self.limit:
            self._ids.discard(self._order.popleft())
        return True


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Store and commit what was taken before another member gets these partitions.
        await self.sink.flush()
        # Erasures not done are not committed: whoever gets their partition reads them again.
        dropped = self.sink.erasures.drop(revoked)
        if dropped:
            log.info("sink: %d pending erasures left to the next owner of their partitions", dropped)
        metrics.ERASURES_PENDING.set(len(self.sink.erasures))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.sink.resume_after_stored(assigned)
        log.info("ClickHouse sink assigned %d partitions: %s", len(assigned), sorted(map(str, assigned)))


class ClickHouseSink:
    def __init__(
        self,
        store: ClickHouseStore,
        specs: dict[str, TableSpec],
        *,
        bootstrap_servers: Sequence[str],
        group_id: str,
        dead_letter_topic: str,
        pseudonymize: Callable[[str], str],
        erasures_topic: str | None = None,
        batch_rows: int = 20000,
        flush_seconds: float = 1.0,
        max_retry_seconds: float = 30.0,
        dedup_window: int = 100_000,
        security: dict[str, Any] | None = None,
        consumer_options: dict[str, int] | None = None,
        verify_end_offsets: bool = False,
    ) -> None:
        self.store = store
        self.specs = specs
        self.batcher = Batcher(specs, batch_rows, flush_seconds)
        self.bootstrap_servers = list(bootstrap_servers)
        self.group_id = group_id
        self.dead_letter_topic = dead_letter_topic
        self.max_retry_seconds = max_retry_seconds
        self.security = security or {}
        self.consumer_options = consumer_options or {}
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        # Erasure marks are end offsets: where the broker reports them short (the embedded one), a
        # consumer outside the group reads them from fetches (streams.worker.offsets.verified_end_offsets).
        self.verify_end_offsets = verify_end_offsets
        self._probe: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._dead_letters = DeadLetterSender(
            dead_letter_topic,
            self._send_dead_letter,
            stopping=self._stopping.is_set,
            sleep=lambda seconds: self._back_off(seconds, None),
        )
        self._flush_lock = asyncio.Lock()  # one store at a time, in the order the batches were sealed
        self._storing: asyncio.Task[bool] | None = None  # the batch being stored while the next is taken
        self._storing_rows = 0
        self._abandoned = False  # a store gave up (stopping, ClickHouse away): nothing more is committed
        # Kafka partition -> offsets up to which ClickHouse already holds the rows (after a crash).
        self._stored_through: dict[TopicPartition, int] = {}
        self._last_offset: dict[TopicPartition, int] = {}  # for the lag gauge
        self.dedup_window = dedup_window
        self._recent: dict[TopicPartition, RecentIds] = {}
        self.pseudonymize = pseudonymize
        self.erasures_topic = erasures_topic
        self.erasures = ErasureQueue()
        self.erased = ErasedUsers()
        # Kafka partition -> offset before which every message is stored (or deliberately skipped) in
        # ClickHouse: by this sink's flushes, or by the group's commits (another member's flushes).
        self._stored_to: dict[TopicPartition, int] = {}
        self._next_progress_check = 0.0
        self._erasure_tables: list[UserTable] | None = None
        self._resuming: set[TopicPartition] = set()  # paused by resume_after_stored until it is done
        self._pseudonymize_row = RowPseudonymizer(pseudonymize)  # pseudonymize_row, per-user work cached
        self._erasures_read = False  # until then no row can be of an erased user: no check per row

    async def run(self) -> None:
        """Consume, batch, insert and commit until :meth:`stop`."""
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, acks="all", **self.security
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batcher.batch_rows,
            **self.consumer_options,
            **self.security,
        )
        topics = [*self.specs, *([self.erasures_topic] if self.erasures_topic else [])]
        self.consumer.subscribe(topics, listener=_Rebalance(self))
        await self.producer.start()
        await self.consumer.start()
        try:
            # Stopping with a dead letter not sent: what was taken before its message is stored and
            # committed, the message is read again after the restart.
            with contextlib.suppress(StopRequested):
                while not self._stopping.is_set():
                    wait = self.batcher.wait_seconds(time.monotonic())
                    room = self.batcher.room()  # never more than batch_rows rows held (memory bound)
                    batches = (
                        await self.consumer.getmany(timeout_ms=int(wait * 1000) + 1, max_records=room)
                        if room
                        else {}
                    )
                    for tp, messages in batches.items():
                        await self._take(tp, messages)
                    self._report_lag()
                    await self._store_if_due()
                    await self._erase_due()
            await self.flush()
            await self._erase_due()
        finally:
            if self._storing is not None and not self._storing.done():
                self._storing.cancel()  # only when run itself was cancelled: stores nothing more
            await self.consumer.stop()
            await self.producer.stop()
            if self._probe is not None:
                await self._probe.stop()

    async def stop(self) -> None:
        self._stopping.set()

    def stored_to(self) -> dict[TopicPartition, int]:
        """Partition -> offset before which every message is stored in ClickHouse (or skipped on
        purpose: a duplicate, a dead letter), as far as this sink knows."""
        return dict(self._stored_to)

    async def _take(self, tp: TopicPartition, messages: list[Any]) -> None:
        if tp.topic == self.erasures_topic:
            await self._take_erasures(tp, messages)
        else:
            await self._take_rows(tp, messages)
        if messages:
            self._last_offset[tp] = messages[-1].offset

    async def _take_rows(self, tp: TopicPartition, messages: list[Any]) -> None:
        """Each message to its rows (one, or an envelope's): read, pseudonymised, dropped if its user was
        erased since or if its id was stored lately, else batched. The hot loop of the sink
        (benchmarks/sink.py): what does not change from row to row is looked up once per fetch.

        What cannot be read is dead-lettered (``unreadable_<table>``): the whole message, or the items
        of an envelope that give no row, alone (their own bytes). An envelope's rows are taken together,
        after its unreadable items are dead-lettered, so that they are stored in one batch: a message is
        stored whole or not at all, as the seek past what ClickHouse holds after a crash assumes."""
        spec = self.specs[tp.topic]
        stored_through = self._stored_through.get(tp, -1)
        recent = self._recent.setdefault(tp, RecentIds(self.dedup_window))
        now = time.monotonic()
        topic, partition = tp.topic, tp.partition
        to_row, to_rows, user_index, id_index = spec.to_row, spec.to_rows, spec.user_index, spec.id_index
        row_id = (lambda row: str(row[id_index])) if isinstance(id_index, int) else spec.row_id
        check_erased = self._erasures_read and spec.user_index is not None and spec.time_index is not None
        pseudonymize = self._pseudonymize_row
        reason = f"unreadable_{spec.table}"
        taken: list[tuple[Any, ...]] = []
        first = last = -1  # offsets of the first and the last row taken
        made: Sequence[tuple[Any, ...]]
        unreadable: Sequence[UnreadableItem] = ()
        rows_made = 0
        for message in messages:
            offset = message.offset
            if offset <= stored_through:
                continue
            try:
                if to_rows is None:
                    row = to_row(message.value, message.headers, partition, offset)
                    if user_index is not None:  # before the row id: ClickHouse holds pseudonyms
                        row = pseudonymize(row, user_index)
                    made = (row,)
                else:
                    made, unreadable = to_rows(message.value, message.headers, partition, offset)
                    rows_made += len(made) + len(unreadable)
                    if user_index is not None:
                        made = [pseudonymize(row, user_index) for row in made]
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                # AttributeError too: a member of the wrong type (a list where an object belongs) read
                # by a row function must not stop the sink.
                made, unreadable = (), (UnreadableItem(repr(error)[:300], None),)
            if unreadable:
                # What came before is batched first, as if taken one by one (a rebalance may flush
                # during the await).
                self.batcher.add_many(topic, partition, offset - 1, taken, first, last, now)
                taken = []
                for item in unreadable:
                    await self._dead_letter(message, reason, item.detail, item.value, item.item)
                unreadable = ()
            for row in made:
                if check_erased and self._erased_before(spec, row):
                    metrics.ERASED_ROWS_DROPPED.labels(spec.table).inc()
                elif not recent.add(row_id(row)):
                    metrics.SINK_DUPLICATES.labels(spec.table).inc()
                else:
                    if not taken:
                        first = offset
                    taken.append(row)
                    last = offset
        if messages:
            self.batcher.add_many(topic, partition, messages[-1].offset, taken, first, last, now)
            if to_rows is not None:
                self.batcher.note_rows_per_message(rows_made / len(messages))

    def _erased_before(self, spec: TableSpec, row: tuple[Any, ...]) -> bool:
        """A row of a user erased since, timed up to the erasure: not to be stored again."""
        if spec.user_index is None or spec.time_index is None:
            return False
        at = row[spec.time_index]
        return isinstance(at, int) and self.erased.drops(row[spec.user_index], at)

    async def _take_erasures(self, tp: TopicPartition, messages: list[Any]) -> None:
        """Queue the erasures read, each with the marks its delete waits for (taken after reading them,
        so they cover every row produced before)."""
        marks = await self._end_offsets() if messages else {}
        for message in messages:
            try:
                erasure = Erasure.from_wire(message.value)
            except ValueError as error:
                # Kept for people to look at (it holds the user id, like any dead letter of the user).
                await self._dead_letter(message, "unreadable_erasures", repr(error)[:300])
                metrics.ERASURES.labels("unreadable").inc()
                self.erasures.add(tp, message.offset, None, {})  # committed in its turn
                continue
            self.erased.add(self.pseudonymize(erasure.user_id), erasure.erased_at_ms)
            self._erasures_read = True
            self.erasures.add(tp, message.offset, erasure, marks)
            log.info(
                "erasure %s read; deleting once %d partitions are stored up to their end offsets",
                redact(erasure.request_id, erasure.user_id),
                sum(1 for mark in marks.values() if mark > 0),
            )
        metrics.ERASURES_PENDING.set(len(self.erasures))

    async def _end_offsets(self) -> dict[TopicPartition, int]:
        """The end offset of every partition of every topic stored, whoever in the group consumes it."""
        assert self.consumer is not None
        partitions = [
            TopicPartition(topic, partition)
            for topic in self.specs
            for partition in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return {}
        reported = dict(await self.consumer.end_offsets(partitions))
        if not self.verify_end_offsets:
            return reported
        if self._probe is None:
            self._probe = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                enable_auto_commit=False,
                fetch_max_wait_ms=100,
                **self.security,
            )
            await self._probe.start()
        return await verified_end_offsets(self._probe, reported)

    async def _erase_due(self) -> None:
        """Carry out the erasures whose rows in flight are all stored; commit each one done."""
        if not len(self.erasures):
            return
        assert self.consumer is not None
        waiting = self.erasures.waiting()
        if waiting:
            # Rows before the marks taken but still in a batch: store them now, not at the next flush.
            taken = self.batcher.commit_offsets()
            if any(taken.get((tp.topic, tp.partition), -1) >= mark for tp, mark in waiting.items()):
                await self.flush(keep_alive=True)
            short = [tp for tp, mark in waiting.items() if self._stored_to.get(tp, -1) < mark]
            now = time.monotonic()
            if short and now >= self._next_progress_check:
                # Partitions another member consumes, or ours not read since the last commit: the
                # group's committed offset says how far they are stored.
                self._next_progress_check = now + self.batcher.flush_seconds
                for tp in short:
                    try:
                        committed = await self.consumer.committed(tp)
                    except KafkaError as error:
                        log.warning("sink: committed offset of %s unknown (%s); retrying later", tp, error)
                        break
                    if committed is not None:
                        self._stored_to[tp] = max(self._stored_to.get(tp, 0), committed)
        for pending in self.erasures.ready(self._stored_to):
            if not await self._erase(pending):
                break  # stopping with ClickHouse away: not committed, so read and done again later
        metrics.ERASURES_PENDING.set(len(self.erasures))

    async def _erase(self, pending: PendingErasure) -> bool:
        erasure = pending.erasure
        if erasure is not None:
            request = redact(erasure.request_id, erasure.user_id)
            # Nothing else is consumed meanwhile, as for an insert; None: the sink is stopping.
            deleted = await self._in_clickhouse(
                f"erasure {request}",
                self._erase_in_clickhouse,
                erasure,
                self.pseudonymize(erasure.user_id),
                keep_alive=True,  # erasures are done from the run loop only
                failed=lambda: metrics.ERASURES.labels("failed").inc(),
            )
            if deleted is None:
                return False
            for table, rows in deleted.items():
                metrics.ERASURE_ROWS_DELETED.labels(table).inc(rows)
            metrics.ERASURES.labels("done").inc()
            log.info("erasure %s done in ClickHouse: %d rows deleted", request, sum(deleted.values()))
        assert self.consumer is not None
        if pending.source in self.consumer.assignment():
            try:
                await self.consumer.commit({pending.source: pending.offset + 1})
            except KafkaError as error:
                # Done but not committed: it is done again by whoever reads it next (idempotent).
                log.warning("sink: commit of an erasure failed (%s); it will be done again", error)
        return True

    def _erase_in_clickhouse(self, erasure: Erasure, pseudonym: str) -> dict[str, int]:
        if self._erasure_tables is None:
            self._erasure_tables = erasure_tables(self.store, self.specs.values())
        deleted = erase_user(self.store, self._erasure_tables, erasure, pseudonym)
        record_erasure(self.store, erasure, deleted)
        return deleted

    async def _dead_letter(
        self, message: Any, reason: str, detail: str, value: bytes | None = None, item: int = 0
    ) -> None:
        """Dead-letter ``message``, or with ``value`` and ``item`` the part of it refused (an event of an
        envelope, counted from 1): bounded, and tried again until the broker takes it
        (:class:`streams.contracts.deadletters.DeadLetterSender`); raises StopRequested if the sink
        stops first."""
        await self._dead_letters.send(message, reason, detail, time.time(), value=value, item=item)

    async def _send_dead_letter(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        assert self.producer is not None
        await self.producer.send_and_wait(topic, value=value, key=key, headers=headers)

    async def flush(self, *, keep_alive: bool = False) -> None:
        """Store and commit everything taken so far: the batch being stored in the background, then
        the one being gathered (each retried until it is stored or the sink stops).

        ``keep_alive``: called from the run loop, so the consumer may be polled while waiting
        (:meth:`_back_off`); not from a rebalance callback."""
        while self._storing is not None:
            await self._wait_storing(keep_alive)
        sealed = self.batcher.seal()  # what is taken during the store waits for the next one
        if sealed is not None:
            self._report_pending(sealed.rows)
            await self._store(sealed, keep_alive)
        self._report_pending()

    async def _store_if_due(self) -> None:
        """From the run loop: once the batch is due, store it in the background while the next one is
        taken (inserting into chdb releases the GIL), after the previous one is stored and committed.
        So the sink holds at most two batches: ``2 * batch_rows`` rows."""
        self._report_pending()
        if not self.batcher.due(time.monotonic()):
            return
        while self._storing is not None:
            await self._wait_storing(keep_alive=True)
        sealed = self.batcher.seal()
        if sealed is None:
            return
        self._storing_rows = sealed.rows
        # Started at once, it queues on the lock before any later batch can (flush waits for it first).
        self._storing = asyncio.create_task(self._store(sealed, keep_alive=False))
        self._report_pending()
        # Let it start now, up to its insert in a thread: a fetch of records already buffered does not
        # yield, so it might otherwise wait for the next batch.
        await asyncio.sleep(0)

    async def _wait_storing(self, keep_alive: bool) -> None:
        """Wait for the batch stored in the background; re-raise what went wrong with it. With
        ``keep_alive``, a wait longer than a second (ClickHouse away) polls with partitions paused
        (:meth:`_back_off`), so the consumer stays in its group."""
        task = self._storing
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=1.0 if keep_alive else None)
        if not done:
            paused: set[TopicPartition] = set()
            try:
                while not task.done():
                    if self._stopping.is_set():  # the store gives up soon: no more polling
                        await asyncio.wait({task})
                        break
                    await self._back_off(0.5, paused, until=task)
            finally:
                self._resume_paused(paused)
        if self._storing is task:
            self._storing, self._storing_rows = None, 0
        task.result()

    async def _store(self, sealed: Sealed, keep_alive: bool) -> bool:
        """Insert a sealed batch (retrying until it is stored or the sink stops), then commit its offsets.
        False if the sink is stopping with ClickHouse away: then nothing more is committed (Kafka still
        has it all, from the last commit)."""
        async with self._flush_lock:
            if self._abandoned:
                return False
            for batch in sealed.tables:
                if not await self._insert(batch, keep_alive):
                    self._abandoned = True
                    return False
            offsets = {TopicPartition(t, p): o for (t, p), o in sealed.offsets.items()}
            for tp, offset in offsets.items():
                self._stored_to[tp] = max(self._stored_to.get(tp, 0), offset)
            assert self.consumer is not None
            assigned = self.consumer.assignment()
            try:
                await self.consumer.commit({tp: o for tp, o in offsets.items() if tp in assigned})
            except KafkaError as error:
                # The rows are stored; whoever consumes these partitions next seeks past them
                # (resume_after_stored), so a lost commit costs a re-read, not a duplicate row.
                log.warning("sink commit failed (%s); the next owner resumes from ClickHouse", error)
            return True

    def _report_pending(self, extra: int = 0) -> None:
        metrics.SINK_PENDING_ROWS.set(self.batcher.rows() + self._storing_rows + extra)

    async def _insert(self, batch: TableBatch, keep_alive: bool) -> bool:
        table = batch.spec.table
        seconds = await self._in_clickhouse(
            f"insert into {table}",
            self.store.insert,
            table,
            batch.spec.columns,
            batch.rows,
            batch.token(),  # the same rows and token on every attempt: stored once
            keep_alive=keep_alive,
            failed=lambda: metrics.SINK_INSERT_FAILURES.labels(table).inc(),
        )
        if seconds is None:
            return False
        metrics.SINK_INSERT_SECONDS.labels(table).observe(seconds)
        metrics.SINK_BATCH_ROWS.labels(table).observe(len(batch.rows))
        metrics.SINK_ROWS.labels(table).inc(len(batch.rows))
        return True

    async def _back_off(
        self, seconds: float, paused: set[TopicPartition] | None, until: asyncio.Task[Any] | None = None
    ) -> None:
        """Wait ``seconds`` between two attempts at ClickHouse (less if the sink stops meanwhile).

        With ``paused`` (a set the caller resumes with :meth:`_resume_paused` once done retrying) the
        wait is spent polling Kafka with every partition paused: nothing is fetched or taken (memory
        stays bounded), yet aiokafka sees a live consumer. Without it, an outage longer than
        ``max_poll_interval_ms`` (5 minutes) would make the consumer leave its group: its partitions
        would go to other sinks (stuck on the same outage) and its commit after the outage would fail.
        A consumer stuck for real (an insert that never returns) still leaves. Only from the run loop,
        never from a rebalance callback (``paused`` None there): a callback must not poll."""
        consumer = self.consumer
        if paused is None or consumer is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)
            return
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and not (until is not None and until.done()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # Paused again each time: a rebalance meanwhile brings new, unpaused partitions.
            fresh = consumer.assignment() - consumer.paused()
            consumer.pause(*fresh)
            paused |= fresh
            taken = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000) + 1)
            for tp, messages in taken.items():  # fetched in a rebalance before the pause: give back
                consumer.seek(tp, messages[0].offset)

    def _resume_paused(self, paused: set[TopicPartition] | None) -> None:
        """Resume what :meth:`_back_off` paused and still is ours, except partitions
        :meth:`resume_after_stored` is handling (it resumes them when done)."""
        if paused and self.consumer is not None:
            self.consumer.resume(*(paused & self.consumer.assignment() - self._resuming))

    async def resume_after_stored(self, assigned: Any) -> None:
        """Seek past rows ClickHouse already holds but whose offsets were never committed, and reload
        the ids stored lately from each partition for de-duplication.

        The partitions are paused meanwhile: aiokafka may already fetch them while this callback runs,
        and a row taken before the seek, or before its partition's ids are loaded, would be stored
        twice. Ids remembered from an earlier assignment are kept (they were stored, or flushed when
        the partition was revoked)."""
        assert self.consumer is not None
        partitions = [tp for tp in assigned if tp.topic in self.specs]  # not the erasures topic
        self.consumer.pause(*partitions)
        self._resuming.update(partitions)  # not for a retry's back-off to resume (_back_off)
        try:
            await self._resume_after_stored(partitions)
        finally:
            self._resuming.difference_update(partitions)
            self.consumer.resume(*partitions)

    async def _resume_after_stored(self, partitions: list[TopicPartition]) -> None:
        assert self.consumer is not None
        stored: dict[str, dict[int, int]] = {}
        for tp in partitions:
            spec = self.specs[tp.topic]
            if spec.table not in stored:
                # Taken without it (ClickHouse away during a rebalance), rows stored and not committed by
                # the previous owner, and upstream repeats, would be stored twice.
                offsets = await self._in_clickhouse(
                    f"sink: reading {spec.table} from ClickHouse", self.store.stored_offsets, spec.table
                )
                if offsets is None:
                    return  # stopping
                stored[spec.table] = offsets
            through = stored[spec.table].get(tp.partition)
            recent = self._recent.setdefault(tp, RecentIds(self.dedup_window))
            if through is None:
                continue
            ids = await self._in_clickhouse(
                f"sink: reading {spec.table} from ClickHouse",
                self.store.recent_ids,
                spec.table,
                spec.id_sql,
                tp.partition,
                through - self.dedup_window + 1,
                self.dedup_window,  # the newest ids, however many rows a message held
            )
            if ids is None:
                return
            for row_id in ids:
                recent.add(row_id)
            committed = await self.consumer.committed(tp)
            if committed is None or committed <= through:
                self._stored_through[tp] = through
                self.consumer.seek(tp, through + 1)
                log.info("sink: %s already stored through offset %d; resuming after it", tp, through)
                # Counted as taken, so the next flush commits past it even if nothing more arrives: an
                # erasure waiting on the group's committed offsets must not wait for a new message.
                self._stored_to[tp] = max(self._stored_to.get(tp, 0), through + 1)
                if self.batcher.consumed.get((tp.topic, tp.partition), -1) < through:
                    self.batcher.add(tp.topic, tp.partition, through, None, time.monotonic())

    async def _in_clickhouse(
        self,
        what: str,
        call: Callable[..., Any],
        *args: Any,
        keep_alive: bool = False,
        failed: Callable[[], Any] | None = None,
    ) -> Any:
        """``call(*args)`` in a thread, retried whatever the driver raises (each failure logged and
        counted), with exponential back-off up to ``max_retry_seconds``, until ClickHouse
        answers; None if the sink stops meanwhile (no call here answers None). ``failed`` is called on
        each failure (to count it).

        ``keep_alive``: from the run loop, the waits poll Kafka with every partition paused
        (:meth:`_back_off`), so the consumer stays in its group however long ClickHouse is away. From a
        rebalance callback (what an assignment must know before its partitions are consumed) it only
        waits: a callback must not poll."""
        delay = 0.1
        paused: set[TopicPartition] | None = set() if keep_alive else None
        try:
            while True:
                try:
                    return await asyncio.to_thread(call, *args)
                except Exception as error:  # whatever the driver raises, the same call is retried
                    if failed is not None:
                        failed()
                    log.warning("%s failed (%s); retrying in %.1fs", what, error, delay)
                    if self._stopping.is_set():
                        return None
                    await self._back_off(delay, paused)
                    delay = min(delay * 2, self.max_retry_seconds)
        finally:
            self._resume_paused(paused)

    def _report_lag(self) -> None:
        assert self.consumer is not None
        lags = {}
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            last = self._last_offset.get(tp)
            if highwater is not None and last is not None:
                lags[(tp.topic, tp.partition)] = max(0, highwater - last - 1)
        metrics.report_lag(self.group_id, lags)

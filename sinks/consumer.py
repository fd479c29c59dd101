"""The ClickHouse sink: Kafka topics to ClickHouse tables in batches, committing only what is stored.

It is its own consumer group (``<app id>-sink``) with manual commits:

1. messages are turned into rows (:mod:`sinks.rows`) and gathered per table until ``batch_rows`` rows
   or ``flush_seconds`` since the batch opened;
2. each table's batch is inserted with a deduplication token made of its offset ranges; a failed insert
   is retried with the same rows and token (exponential back-off), and no more is fetched meanwhile,
   so memory stays bounded while ClickHouse is away;
3. only then are the offsets committed.

A crash between insert and commit would replay the batch with other boundaries, so on assignment the
sink also asks ClickHouse for the highest offset it holds per partition (``sink_offsets``) and seeks
past it. A message that cannot be read as a row goes to the dead-letter topic, never into a table.

Upstream stages are at-least-once: a worker that stops or crashes re-processes what it had not
committed, so the same event or intervention can reach a topic twice, at two offsets. The sink drops a
row whose id it has stored within the last ``dedup_window`` messages of that partition (reloaded from
ClickHouse when it gets the partition), so counts, and the materialized views built on inserts, stay
exact. The ReplacingMergeTree engines are the backstop beyond that window.

Privacy (:mod:`sinks.privacy`, :mod:`sinks.erasure`): a row of a table with a user column has its user
id replaced by the keyed pseudonym before anything else is done with it (its id for de-duplication
is computed after, matching the ids ClickHouse holds), so no raw user id reaches those tables. With
``erasures_topic`` the sink also reads the erasures the workers carried out and deletes the user's rows
from ClickHouse once no row produced before the erasure can still be on its way; the erasure's offset
is committed only after the delete.
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
from sinks.erasure import (
    ErasedUsers,
    Erasure,
    ErasureQueue,
    PendingErasure,
    erase_user,
    erasure_tables,
    record_erasure,
    redact,
)
from sinks.privacy import UserTable, pseudonymize_row
from sinks.rows import TableSpec
from streams import metrics
from streams.deadletters import dead_letter_headers
from streams.offsets import verified_end_offsets

log = logging.getLogger(__name__)


@dataclass
class TableBatch:
    spec: TableSpec
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    # partition -> [first offset, last offset] of the rows in this batch
    ranges: dict[int, list[int]] = field(default_factory=dict)

    def add(self, partition: int, offset: int, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        span = self.ranges.get(partition)
        if span is None:
            self.ranges[partition] = [offset, offset]
        else:
            span[1] = offset

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
    >>> batcher.due(now=10.6), batcher.commit_offsets()
    (True, {('forewarn-events', 0): 7})
    """

    def __init__(self, specs: dict[str, TableSpec], batch_rows: int, flush_seconds: float) -> None:
        self.specs = specs
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.tables: dict[str, TableBatch] = {}
        self.consumed: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset taken
        self.opened_at: float | None = None

    def add(self, topic: str, partition: int, offset: int, row: tuple[Any, ...] | None, now: float) -> None:
        """Take one message; ``row`` None means it produced no row (skipped or dead-lettered)."""
        if self.opened_at is None:
            self.opened_at = now
        self.consumed[(topic, partition)] = offset
        if row is not None:
            spec = self.specs[topic]
            self.tables.setdefault(spec.table, TableBatch(spec)).add(partition, offset, row)

    def rows(self) -> int:
        return max((len(batch.rows) for batch in self.tables.values()), default=0)

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
        batch_rows: int = 5000,
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
        # consumer outside the group reads them from fetches (streams.offsets.verified_end_offsets).
        self.verify_end_offsets = verify_end_offsets
        self._probe: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._flush_lock = asyncio.Lock()
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
            while not self._stopping.is_set():
                wait = self.batcher.wait_seconds(time.monotonic())
                batches = await self.consumer.getmany(timeout_ms=int(wait * 1000) + 1)
                for tp, messages in batches.items():
                    await self._take(tp, messages)
                self._report_lag()
                if self.batcher.due(time.monotonic()):
                    await self.flush()
                await self._erase_due()
            await self.flush()
            await self._erase_due()
        finally:
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
        spec = self.specs[tp.topic]
        stored_through = self._stored_through.get(tp, -1)
        recent = self._recent.setdefault(tp, RecentIds(self.dedup_window))
        now = time.monotonic()
        for message in messages:
            row = None
            if message.offset > stored_through:
                try:
                    row = spec.to_row(message.value, message.headers, message.partition, message.offset)
                    if spec.user_index is not None:  # before the row id: ClickHouse holds pseudonyms
                        row = pseudonymize_row(row, spec.user_index, self.pseudonymize)
                except (ValueError, KeyError, TypeError) as error:
                    await self._dead_letter(message, f"unreadable_{spec.table}", repr(error)[:300])
                if row is not None and self._erased_before(spec, row):
                    metrics.ERASED_ROWS_DROPPED.labels(spec.table).inc()
                    row = None
                if row is not None and not recent.add(spec.row_id(row)):
                    metrics.SINK_DUPLICATES.labels(spec.table).inc()
                    row = None
            self.batcher.add(tp.topic, tp.partition, message.offset, row, now)

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
                await self.flush()
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
            deleted = await self._erase_with_retries(request, erasure, self.pseudonymize(erasure.user_id))
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

    async def _erase_with_retries(
        self, request: str, erasure: Erasure, pseudonym: str
    ) -> dict[str, int] | None:
        """Delete and audit, retried until done (exponential back-off, nothing else is consumed
        meanwhile, like an insert); None if the sink is stopping meanwhile."""
        delay = 0.1
        while True:
            try:
                return await asyncio.to_thread(self._erase_in_clickhouse, erasure, pseudonym)
            except Exception as error:  # whatever the driver raises, the erasure is retried
                metrics.ERASURES.labels("failed").inc()
                log.warning("erasure %s failed (%s); retrying in %.1fs", request, error, delay)
                if self._stopping.is_set():
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, self.max_retry_seconds)

    async def _dead_letter(self, message: Any, reason: str, detail: str) -> None:
        assert self.producer is not None
        headers = dead_letter_headers(
            message.topic, message.partition, message.offset, reason, detail, time.time()
        )
        await self.producer.send_and_wait(
            self.dead_letter_topic, value=message.value, key=message.key, headers=headers
        )
        metrics.DEAD_LETTERS.labels(reason).inc()

    async def flush(self) -> None:
        """Insert every pending batch (retrying until it is stored or the sink stops), then commit."""
        async with self._flush_lock:
            if self.batcher.opened_at is None:
                return
            for batch in list(self.batcher.tables.values()):
                if not await self._insert(batch):
                    return  # stopping with ClickHouse away: nothing is committed, Kafka still has it
            offsets = {TopicPartition(t, p): o for (t, p), o in self.batcher.commit_offsets().items()}
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
            self.batcher.clear()

    async def _insert(self, batch: TableBatch) -> bool:
        table, token = batch.spec.table, batch.token()
        delay = 0.1
        while True:
            try:
                seconds = await asyncio.to_thread(
                    self.store.insert, table, batch.spec.columns, batch.rows, token
                )
            except Exception as error:  # whatever the driver raises, the batch is kept and retried
                metrics.SINK_INSERT_FAILURES.labels(table).inc()
                log.warning("insert into %s failed (%s); retrying in %.1fs", table, error, delay)
                if self._stopping.is_set():
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, self.max_retry_seconds)
                continue
            metrics.SINK_INSERT_SECONDS.labels(table).observe(seconds)
            metrics.SINK_BATCH_ROWS.labels(table).observe(len(batch.rows))
            metrics.SINK_ROWS.labels(table).inc(len(batch.rows))
            return True

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
        try:
            await self._resume_after_stored(partitions)
        finally:
            self.consumer.resume(*partitions)

    async def _resume_after_stored(self, partitions: list[TopicPartition]) -> None:
        assert self.consumer is not None
        stored: dict[str, dict[int, int]] = {}
        for tp in partitions:
            spec = self.specs[tp.topic]
            if spec.table not in stored:
                stored[spec.table] = await asyncio.to_thread(self.store.stored_offsets, spec.table)
            through = stored[spec.table].get(tp.partition)
            recent = self._recent.setdefault(tp, RecentIds(self.dedup_window))
            if through is None:
                continue
            for row_id in await asyncio.to_thread(
                self.store.recent_ids, spec.table, spec.id_sql, tp.partition, through - self.dedup_window + 1
            ):
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

    def _report_lag(self) -> None:
        assert self.consumer is not None
        lags = {}
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            last = self._last_offset.get(tp)
            if highwater is not None and last is not None:
                lags[(tp.topic, tp.partition)] = max(0, highwater - last - 1)
        metrics.report_lag(self.group_id, lags)

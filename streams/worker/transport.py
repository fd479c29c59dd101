"""Faust's Kafka transport as the worker uses it: what it changes, in one line each.

* Fetch wait from ``FOREWARN_BROKER_FETCH_MAX_WAIT`` (Faust fixes it at 1.5 s; the embedded broker
  holds every fetch for a share of it).
* End offsets read from a fetch with ``FOREWARN_BROKER_VERIFY_END_OFFSETS``
  (:func:`streams.worker.offsets.verified_end_offsets`), for brokers whose ListOffsets answer is short.
* Records fetched before a rebalance's seek moved their partition are dropped unless they start where
  the seek put it, so none is skipped.
* A partition with nothing committed is sought to its first offset (:func:`seek_to_committed_or_start`).
* Nothing is committed past an unacknowledged head (:meth:`_Consumer._new_offset`).
* Per record: the conductor's lock only while deliveries are updated (:class:`_Conductor`), and only
  the sensors the worker reads (:func:`use_lean_sensors`).

Why each, what it fixed and how it was found: docs/reliability.md, "Faust's transport".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Collection, Coroutine, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from faust.sensors import Monitor, Sensor, SensorDelegate
from faust.transport.conductor import Conductor
from faust.transport.consumer import ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.worker.offsets import verified_end_offsets

log = logging.getLogger(__name__)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    _probe: AIOKafkaConsumer | None = None

    def _create_worker_consumer(self, transport: Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when the consumer starts (it builds its fetcher then); Faust offers no
        # other way to set it.
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        reported = await super()._highwaters(partitions)
        transport: Transport = self.transport  # type: ignore[assignment]
        if transport.probe_settings is None:
            return reported
        if self._probe is None:
            self._probe = AIOKafkaConsumer(
                enable_auto_commit=False, fetch_max_wait_ms=100, **transport.probe_settings
            )
            await self._probe.start()
        return await verified_end_offsets(self._probe, reported)

    async def seek_to_committed_or_start(
        self, changelogs: Collection[str]
    ) -> tuple[Mapping[Any, int | None], Mapping[Any, int]]:
        """:func:`seek_to_committed_or_start` on the consumer's thread."""
        return await self.call_thread(seek_to_committed_or_start, self._ensure_consumer(), changelogs)

    async def on_thread_stop(self) -> None:
        await super().on_thread_stop()
        if self._probe is not None:  # stopped on the thread's own loop, where it was started
            await self._probe.stop()
            self._probe = None


async def seek_to_committed_or_start(
    consumer: AIOKafkaConsumer, changelogs: Collection[str]
) -> tuple[Mapping[Any, int | None], Mapping[Any, int]]:
    """Seek every assigned partition to its committed offset, and each one with nothing committed to
    its first offset (not those of the ``changelogs`` topics: table recovery places them, and nothing
    is committed on them); return the committed offsets (None where nothing) and those first offsets.

    aiokafka's ``seek_to_committed`` moves a partition only to a positive committed offset and leaves
    the others where its fetcher got to. Faust drops records it has fetched (a batch that arrives while
    a rebalance has stopped the flow, records of a paused partition) and relies on this seek to fetch
    them again; a partition that was never committed was left past them, and with nothing committed
    and no read offset, Faust saw no gap either and committed the first records it processed after
    them: the worker cut off the broker lost every input record of such partitions that arrived
    before it rejoined. A consumer with nothing committed starts at the partition's first offset
    (``auto_offset_reset="earliest"``, the app's), so that is where the seek puts it."""
    committed: dict[Any, int | None] = dict(await consumer.seek_to_committed())
    # None, or 0: not moved
    unset = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
    starts: dict[Any, int] = dict(await consumer.beginning_offsets(unset)) if unset else {}
    for tp, start in starts.items():
        consumer.seek(tp, start)
    return committed, starts


class _Consumer(faust_aiokafka.Consumer):
    _seeking = False  # a seek to the committed offsets is under way
    _seek_done: asyncio.Event | None = None
    _seeks = 0  # seeks begun so far
    _fetch_seeks = 0  # the seek count when the batch being delivered was fetched
    # partition -> (the seek count when it was last moved, where to): set by each seek
    _moved: dict[Any, tuple[int, int]] = {}
    _reread: dict[Any, int] = {}  # partition -> the committed offset it was read again from
    # partition -> (end of the records read again, the last record delivered before): those between
    # were processed already, and are not delivered again
    _rereading: dict[Any, tuple[int, int]] = {}
    _reread_task: asyncio.Future[None] | None = None
    # partition -> its first offset, for the partitions with nothing committed at the last seek: where
    # their records start, as the committed offset says for the others
    _start: dict[Any, int] = {}
    _gathering: weakref.WeakSet[Any] | None = None
    _rebalanced: weakref.WeakSet[Any] | None = None

    def abandon(self, message: Any) -> None:
        """Leave ``message`` unacknowledged for good in this run: it is not committed past (it is read
        again after the restart), and the shutdown and the rebalances, which wait for every message
        delivered to be acknowledged (Faust's ``wait_empty``), no longer wait for it. Marked acknowledged,
        so that a stream acknowledging it later (a batch's, on its way out) does not commit past it."""
        message.acked = True
        self._unacked_messages.discard(message)

    @property
    def gathering(self) -> weakref.WeakSet[Any]:
        """The messages agents took into a batch they have not handed to its handler yet
        (:func:`streams.worker.guard.each_batch` adds and removes them): nothing of them is done."""
        if self._gathering is None:
            self._gathering = weakref.WeakSet()
        return self._gathering

    @property
    def rebalanced(self) -> weakref.WeakSet[Any]:
        """Gathered messages a rebalance did not wait for: their agent checks, when it hands them on,
        that their partition is still this worker's (:meth:`still_held`)."""
        if self._rebalanced is None:
            self._rebalanced = weakref.WeakSet()
        return self._rebalanced

    def abandon_gathered(self) -> int:
        """Abandon every message of a batch still being gathered; how many."""
        gathered = list(self.gathering)
        for message in gathered:
            self.abandon(message)
        self.gathering.clear()
        return len(gathered)

    def release_gathered(self) -> None:
        """No longer wait for the messages of a batch still being gathered (a rebalance): they are
        handed on once the flow resumes, and acknowledged then."""
        for message in list(self.gathering):
            self._unacked_messages.discard(message)
            self.rebalanced.add(message)

    def still_held(self, message: Any) -> bool:
        """Whether a gathered message a rebalance did not wait for may be handled: its partition is
        still this worker's (tracked again until acknowledged), or it is abandoned (the partition's new
        owner reads it from the committed offset)."""
        self.rebalanced.discard(message)
        if message.tp in self.assignment():
            self._unacked_messages.add(message)
            return True
        self.abandon(message)
        return False

    async def wait_empty(self) -> None:
        """Faust's wait for every message delivered to be acknowledged, but not for those of a batch
        still being gathered: its agent waits for the next record, which the queues Faust has just
        cleared give it only once the flow resumes, after this wait; Faust would wait until the worker
        is killed, or its rebalance for ever. At shutdown they are abandoned (nothing of them was done:
        they are read again after the restart); at a rebalance the agent hands them on afterwards."""
        if self.app.should_stop:
            self.abandon_gathered()
        else:
            self.release_gathered()
        await super().wait_empty()

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """Faust's: every assigned partition to its committed offset, Faust's read offsets to match;
        a partition with nothing committed to its first offset (:func:`seek_to_committed_or_start`);
        and where each partition was moved."""
        done = self._seek_done = self._seek_done or asyncio.Event()
        done.clear()
        self._seeking = True
        self._seeks += 1
        seek = self._seeks
        try:
            committed, starts = await self._thread.seek_to_committed_or_start(
                self.app.tables.changelog_topics
            )
            self._read_offset.update(
                {
                    tp: offset if offset is not None and offset >= 0 else None
                    for tp, offset in committed.items()
                }
            )
            self._committed_offset.update(
                {ensure_TP(tp): offset or None for tp, offset in committed.items() if offset is not None}
            )
            # aiokafka moves a partition only to a positive committed offset.
            moved = {tp: (seek, offset) for tp, offset in committed.items() if offset and offset > 0}
            self._moved = {**self._moved, **moved, **{tp: (seek, start) for tp, start in starts.items()}}
            self._start = dict(starts)
            # Every partition is read again from there, in order: a reading again begun before is over
            # (kept, it would pass over records whose acknowledgements a rebalance has dropped).
            self._reread = {tp: at for tp, at in self._reread.items() if tp not in committed}
            self._rereading = {tp: at for tp, at in self._rereading.items() if tp not in committed}
        finally:
            self._seeking = False
            done.set()

    async def seek(self, partition: Any, offset: int) -> None:
        """Faust's, recorded as :meth:`perform_seek`'s are."""
        self._seeks += 1
        self._moved = {**self._moved, partition: (self._seeks, offset)}
        await super().seek(partition, offset)

    async def _wait_next_records(self, timeout: float) -> Any:
        seeks = self._seeks
        records, active = await super()._wait_next_records(timeout)
        if records and self._seeking and self._seek_done is not None:
            await self._seek_done.wait()  # to know where the seek under way moves each partition
        self._fetch_seeks = seeks
        return records, active

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        """Faust's batches, without the records a seek made stale (see the module's docstring)."""
        checked: set[Any] = set()  # partitions whose records in this batch follow their last seek
        stale: set[Any] = set()  # partitions whose records in this batch predate their last seek
        async with contextlib.aclosing(super().getmany(timeout)) as batch:
            async for tp, message in batch:
                seek, target = self._moved.get(tp, (0, 0))
                if seek > self._fetch_seeks and tp not in checked:
                    if tp in stale or message.offset != target:
                        # Fetched before a seek moved its partition: fetched again from there.
                        if tp not in stale:
                            stale.add(tp)
                            log.info("records of %s from before a seek to %d dropped", tp, target)
                        continue
                    checked.add(tp)  # at the seek's target: fetched after it
                again = self._rereading.get(tp)
                if again is not None:
                    end, last = again
                    if end <= message.offset <= last:
                        # Processed already (read again for a record before it): passed over as
                        # Faust's fetch loop would pass over a record read, with no gap.
                        self._read_offset[tp] = message.offset
                        continue
                    if message.offset > last:
                        self._rereading = {p: a for p, a in self._rereading.items() if p != tp}
                seeks = self._seeks
                yield tp, message
                if self._seeks != seeks:  # seeks while it was being processed
                    if self._seeking and self._seek_done is not None:
                        await self._seek_done.wait()
                    moved = {moved for moved, (when, _) in self._moved.items() if when > seeks}
                    checked -= moved  # the rest of their records in this batch predate the seek
                    if tp in moved:
                        # Faust has just set the read offset to this record's, over the seek's,
                        # and would drop the records fetched again as read.
                        self._read_offset[tp] = self._moved[tp][1]

    async def _read_again(self, tp: Any, start: int, end: int) -> None:
        """Read ``tp``'s records from ``start`` to ``end`` (excluded) again, and not the ones delivered
        after them: from the seek on, no record fetched before it is delivered (:meth:`getmany`)."""
        last = self._read_offset.get(tp)
        self._rereading = {**self._rereading, tp: (end, end - 1 if last is None else last)}
        await self.seek(tp, start)

    def _new_offset(self, tp: Any) -> int | None:
        """Faust's, but never past a record that was not acknowledged at the head of the partition.

        Faust's own check of the head compares the first acknowledged offset with the committed one
        as if that were the last record processed; it is the next one to process, so a single record
        there that was delivered and never acknowledged was committed past, and lost (a restarted
        worker lost the first record of a partition that way). Such a record is read again, once
        (the partition is read again from it, and the records acknowledged since are not delivered
        again); a head still missing afterwards is an offset the log does not hold (a transaction
        marker, a compacted record): committed past, as Faust would."""
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        if committed is None:  # nothing committed yet: its records start at its first offset
            committed = self._start.get(tp)
        if acked and committed is not None:
            head = min(min(acked), min((gap.begin for gap in self._gap[tp]), default=committed + 1))
            if head > committed:
                if not self.flow_active:
                    # A rebalance is under way: the seek that ends it reads from the committed offset.
                    return None
                if self._reread.get(tp) != committed:
                    self._reread = {**self._reread, tp: committed}
                    log.warning(
                        "%s: offsets %d-%d never processed; reading them again", tp, committed, head - 1
                    )
                    self._reread_task = asyncio.ensure_future(self._read_again(tp, committed, head))
                    return None
                acked.extend(range(committed, head))
                self._acked_index[tp].update(range(committed, head))
        return super()._new_offset(tp)


class _Conductor(Conductor):
    def _compile_message_handler(self) -> Any:
        """Faust's handler of a fetched record: the delivery to the streams of its partition. Faust's
        is a coroutine taking the lock of the partitions' deliveries for every record around a lookup
        that does not wait, so the lock only makes it wait for an update of them under way
        (``_update_indices``, which holds it across waits). Here the lock is taken only while such an
        update holds it, and otherwise the partition's delivery is returned as it is, one coroutine
        less per record."""
        if self.app.client_only:  # its records are delivered by topic, not partition: Faust's
            return super()._compile_message_handler()
        deliveries = self._tp_to_callback
        lock = self._tp_to_callback_lock

        async def after_update(message: Any) -> None:
            async with lock:
                delivery = deliveries[message.tp]
            await delivery(message)

        def on_message(message: Any) -> Coroutine[Any, Any, None]:
            if lock.locked():
                return after_update(message)
            return deliveries[message.tp](message)

        return on_message


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
    Conductor = _Conductor

    def __init__(
        self, url: Any, app: Any, *, fetch_max_wait_ms: int, probe_settings: dict[str, Any] | None
    ) -> None:
        super().__init__(url, app)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.probe_settings = probe_settings


def use_transport(app: Any, settings: Any) -> None:
    """Make ``app`` consume with fetches that wait at most ``settings.fetch_max_wait_ms`` for data, check
    end offsets by a fetch when ``settings.broker_verify_end_offsets``, and take Faust's Cython fast
    paths (``cython_optimizations``: a stream takes the events waiting in its buffer without awaiting
    each one, and the conductor decodes a record once for all the channels of one key and value type on
    its partition; the worker reads each topic through one channel, as bytes). Call it before the app's
    first topic: that is when Faust makes its transport."""
    app.conf.cython_optimizations = True
    probe = (
        {"bootstrap_servers": settings.bootstrap_servers, **settings.aiokafka_security()}
        if settings.broker_verify_end_offsets
        else None
    )
    app.transport = Transport(
        app.conf.broker_consumer, app, fetch_max_wait_ms=settings.fetch_max_wait_ms, probe_settings=probe
    )


class LeanMonitor(Monitor):
    """Faust's Monitor keeping, of what Faust reports for every record, event, table access and send,
    only each partition's last record read (``tp_read_offsets``, the worker's lag gauge). The end and
    committed offsets, the commit latencies and the rebalance figures are kept as Faust keeps them.

    The hooks dropped are Sensor's no-ops, so that :class:`LeanSensorDelegate` does not call them at
    all; the figures they fed (events and messages counted by topic, stream and task, their times,
    send latencies) are read by nothing in the worker, which exports its own metrics."""

    on_message_out = Sensor.on_message_out
    on_stream_event_in = Sensor.on_stream_event_in
    on_stream_event_out = Sensor.on_stream_event_out
    on_table_get = Sensor.on_table_get
    on_table_set = Sensor.on_table_set
    on_table_del = Sensor.on_table_del
    on_send_initiated = Sensor.on_send_initiated
    on_send_completed = Sensor.on_send_completed
    on_send_error = Sensor.on_send_error

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        self.tp_read_offsets[tp] = offset


# Faust's hooks called for every record, event, table access or send, in groups that share the state
# the first one returns: a sensor is called for all of a group's hooks if it implements one of them.
FREQUENT_HOOKS = (
    ("on_message_in",),
    ("on_message_out",),
    ("on_stream_event_in", "on_stream_event_out"),
    ("on_table_get",),
    ("on_table_set",),
    ("on_table_del",),
    ("on_send_initiated", "on_send_completed", "on_send_error"),
)


def implements(sensor: Any, hook: str) -> bool:
    """Whether ``sensor``'s class has its own ``hook``, rather than Sensor's, which does nothing."""
    return getattr(type(sensor), hook) is not getattr(Sensor, hook)


class LeanSensorDelegate(SensorDelegate):
    """Faust's delegate of the app's sensors, calling each hook of :data:`FREQUENT_HOOKS` only on the
    sensors that implement it; Faust calls every sensor's, and makes a dictionary of their states for
    every event. The other hooks (commits, rebalances, web requests) are Faust's."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._implementing: dict[str, list[Any]] = {}
        self._index()

    def add(self, sensor: Any) -> None:
        super().add(sensor)
        self._index()

    def remove(self, sensor: Any) -> None:
        super().remove(sensor)
        self._index()

    def _index(self) -> None:
        self._implementing = {
            hook: [sensor for sensor in self._sensors if any(implements(sensor, h) for h in group)]
            for group in FREQUENT_HOOKS
            for hook in group
        }

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        for sensor in self._implementing["on_message_in"]:
            sensor.on_message_in(tp, offset, message)

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        for sensor in self._implementing["on_message_out"]:
            sensor.on_message_out(tp, offset, message)

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> dict[Any, Any] | None:
        sensors = self._implementing["on_stream_event_in"]
        if not sensors:
            return None
        return {sensor: sensor.on_stream_event_in(tp, offset, stream, event) for sensor in sensors}

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: dict[Any, Any] | None = None
    ) -> None:
        for sensor in self._implementing["on_stream_event_out"]:
            sensor.on_stream_event_out(tp, offset, stream, event, (state or {}).get(sensor))

    def on_table_get(self, table: Any, key: Any) -> None:
        for sensor in self._implementing["on_table_get"]:
            sensor.on_table_get(table, key)

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        for sensor in self._implementing["on_table_set"]:
            sensor.on_table_set(table, key, value)

    def on_table_del(self, table: Any, key: Any) -> None:
        for sensor in self._implementing["on_table_del"]:
            sensor.on_table_del(table, key)

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:
        return {
            sensor: sensor.on_send_initiated(producer, topic, message, keysize, valsize)
            for sensor in self._implementing["on_send_initiated"]
        }

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        for sensor in self._implementing["on_send_completed"]:
            sensor.on_send_completed(producer, state[sensor], metadata)

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        for sensor in self._implementing["on_send_error"]:
            sensor.on_send_error(producer, exc, state[sensor])


def use_lean_sensors(app: Any) -> None:
    """Make ``app`` report each record, event, table access and send only to the sensors that use it
    (:class:`LeanSensorDelegate`), its monitor a :class:`LeanMonitor`. Call it before the app's first
    table or agent: they take the sensors' hooks when they are made, and the monitor when the app
    starts."""
    lean = LeanSensorDelegate(app)
    for sensor in list(app.sensors):
        lean.add(sensor)
    app.sensors = lean
    app.conf.Monitor = LeanMonitor

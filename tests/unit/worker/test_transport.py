"""The Kafka transport's fixes to Faust's consumer (streams/worker/transport.py), each against the failure it
fixes: here the seek back to the committed offsets, which left partitions with nothing committed past
records Faust had fetched and dropped (the broker cut-off test lost their records); and its cuts to
Faust's per-record work (the fetch loop's delivery, the sensors), each against what it must keep."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from faust.utils.optin import cython_optimizations_enabled

from streams.contracts.settings import Settings
from streams.worker.statewrites import BeforeCommit
from streams.worker.transport import LeanMonitor, LeanSensorDelegate, seek_to_committed_or_start


async def test_the_seek_to_committed_offsets_moves_a_partition_with_nothing_committed_to_its_start(
    broker,
) -> None:
    # Records of a partition never committed, fetched and dropped (as Faust drops a batch that arrives
    # while a rebalance stopped its flow): the seek must bring them back, as it does for the others.
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for partition in (0, 1):
            for index in range(5):
                await producer.send_and_wait("input", b"%d" % index, partition=partition)
        await producer.send_and_wait("app-table-changelog", b"state", partition=0)
    finally:
        await producer.stop()
    committed_tp, never_tp = TopicPartition("input", 0), TopicPartition("input", 1)
    changelog_tp = TopicPartition("app-table-changelog", 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="app", enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([committed_tp, never_tp, changelog_tp])
        await consumer.seek_to_beginning(committed_tp, never_tp, changelog_tp)
        await consumer.commit({committed_tp: OffsetAndMetadata(2, "")})
        fetched: dict[Any, int] = {}
        while fetched != {committed_tp: 5, never_tp: 5, changelog_tp: 1}:  # every record taken, dropped
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                fetched[tp] = fetched.get(tp, 0) + len(records)

        committed, starts = await seek_to_committed_or_start(consumer, {"app-table-changelog"})

        assert committed == {committed_tp: 2, never_tp: None, changelog_tp: None}
        assert starts == {never_tp: 0}
        assert await consumer.position(committed_tp) == 2
        assert await consumer.position(never_tp) == 0  # aiokafka's own seek left it at 5
        assert await consumer.position(changelog_tp) == 1  # table recovery places changelogs
    finally:
        await consumer.stop()


def worker_app(tmp_path: Path) -> Any:
    """The worker's Faust app, never started."""
    from streams.worker.app import create_app

    settings = Settings.from_env(
        {
            "FOREWARN_CLICKHOUSE_DSN": f"chdb://{tmp_path}",
            "FOREWARN_CLUSTER_SECRET_FILE": f"{tmp_path}/cluster.key",
        }
    )
    return create_app(settings)


def app_consumer(tmp_path: Path) -> Any:
    """The app's Faust consumer (the transport's), never started; its seeks recorded in ``seeks``."""
    consumer = worker_app(tmp_path).consumer
    consumer.seeks = []

    async def seek(partition: Any, offset: int) -> None:
        consumer.seeks.append((partition, offset))

    consumer.seek = seek
    return consumer


async def test_a_first_record_never_acknowledged_is_read_again_when_nothing_was_committed(tmp_path) -> None:
    # Faust checks the head of the acknowledged offsets against the committed offset only: with
    # nothing committed it committed past a first record delivered and never acknowledged.
    consumer = app_consumer(tmp_path)
    seeks = consumer.seeks
    tp = TopicPartition("clickstream", 2)
    consumer._start = {tp: 0}  # where the last seek put it: nothing committed
    consumer._acked[tp].extend(range(1, 93))
    consumer._acked_index[tp].update(range(1, 93))

    assert consumer._new_offset(tp) is None  # not 93: offset 0 was never processed
    await consumer._reread_task
    assert seeks == [(tp, 0)]
    # Read again once; a head still missing afterwards is an offset the log does not hold.
    assert consumer._new_offset(tp) == 93


async def test_a_head_missing_during_a_rebalance_waits_for_the_seek_that_ends_it(tmp_path) -> None:
    # Read again then, the partition would be read again after the rebalance with the acknowledgements
    # of what it passes over dropped by the revocation.
    consumer = app_consumer(tmp_path)
    tp = TopicPartition("logistics", 0)
    consumer._start = {tp: 0}
    consumer._acked[tp].extend(range(1, 10))
    consumer.stop_flow()

    assert consumer._new_offset(tp) is None
    assert consumer._reread_task is None and consumer._reread == {} and consumer.seeks == []


async def test_the_seek_to_the_committed_offsets_ends_any_reading_again(tmp_path) -> None:
    consumer = app_consumer(tmp_path)
    committed_tp, never_tp = TopicPartition("clickstream", 0), TopicPartition("logistics", 0)
    consumer._reread = {never_tp: 0}
    consumer._rereading = {never_tp: (1, 40), committed_tp: (7, 9)}

    async def seek_to_committed_or_start(changelogs: Any) -> Any:
        assert "forewarn-users-changelog" in changelogs
        return {committed_tp: 6, never_tp: None}, {never_tp: 0}

    consumer._thread.seek_to_committed_or_start = seek_to_committed_or_start
    await consumer.perform_seek()

    # From here each partition is read in order from where the seek put it, and acknowledged again.
    assert consumer._reread == {} and consumer._rereading == {}
    assert consumer._start == {never_tp: 0}
    assert consumer._moved == {committed_tp: (1, 6), never_tp: (1, 0)}
    assert (consumer._read_offset[committed_tp], consumer._read_offset[never_tp]) == (6, None)


def record(offset: int) -> Any:
    """What Faust's fetch loop reads of a fetched record."""
    return SimpleNamespace(topic="clickstream", offset=offset, key=b"k", value=b"v")


def test_the_worker_reports_each_record_only_to_the_sensors_that_use_it(tmp_path) -> None:
    # The lag gauge (report_partitions) reads the monitor's read offsets; Faust's monitor also counts
    # and times every record, event and send, which nothing reads.
    app = worker_app(tmp_path)
    assert isinstance(app.sensors, LeanSensorDelegate) and isinstance(app.monitor, LeanMonitor)
    app.sensors.add(app.monitor)  # as the app does when it starts
    tp, message, stream = TopicPartition("clickstream", 1), SimpleNamespace(), SimpleNamespace()

    for offset in (40, 41):  # as Faust's stream reports a record
        app.sensors.on_message_in(tp, offset, message)
        state = app.sensors.on_stream_event_in(tp, offset, stream, None)
        app.sensors.on_stream_event_out(tp, offset, stream, None, state)
        app.sensors.on_message_out(tp, offset, message)

    assert app.monitor.tp_read_offsets == {tp: 41}
    assert state is None  # no dictionary of the sensors' states made per event
    assert app.monitor.messages_received_total == 0 and app.monitor.events_total == 0
    assert cython_optimizations_enabled(app.conf)


def test_the_state_writes_before_each_commit_still_run(tmp_path) -> None:
    app = worker_app(tmp_path)
    app.sensors.add(app.monitor)
    (before_commit,) = (sensor for sensor in app.sensors if isinstance(sensor, BeforeCommit))
    writes = []
    before_commit._write = lambda: writes.append("written")
    consumer = SimpleNamespace()

    app.sensors.on_message_in(TopicPartition("clickstream", 1), 3, SimpleNamespace())
    assert writes == []
    app.sensors.on_commit_completed(consumer, app.sensors.on_commit_initiated(consumer))

    assert writes == ["written"]
    assert len(app.monitor.commit_latency) == 1  # the monitor's own commit hooks are Faust's


async def test_the_conductor_hands_a_record_to_its_partition_with_no_coroutine_of_its_own(tmp_path) -> None:
    # Faust's wraps every record's delivery in a coroutine taking a lock around a dictionary lookup.
    conductor = worker_app(tmp_path).topics
    tp, delivered = TopicPartition("clickstream", 0), []

    async def delivery(message: Any) -> None:
        delivered.append(message.offset)

    conductor._tp_to_callback[tp] = delivery
    handed = conductor.on_message(SimpleNamespace(tp=tp, offset=5))

    assert handed.cr_code is delivery.__code__
    await handed
    assert delivered == [5]


async def test_the_conductor_waits_for_an_update_of_the_deliveries_under_way(tmp_path) -> None:
    # An update (a new assignment) holds the lock across waits while it rebuilds the deliveries: a
    # record that arrives meanwhile goes to the delivery the update leaves.
    conductor = worker_app(tmp_path).topics
    tp, delivered = TopicPartition("clickstream", 0), []

    async def old(message: Any) -> None:
        delivered.append(("old", message.offset))

    async def new(message: Any) -> None:
        delivered.append(("new", message.offset))

    conductor._tp_to_callback[tp] = old
    async with conductor._tp_to_callback_lock:
        handed = asyncio.ensure_future(conductor.on_message(SimpleNamespace(tp=tp, offset=6)))
        await asyncio.sleep(0.01)
        assert delivered == []
        conductor._tp_to_callback[tp] = new
    await handed

    assert delivered == [("new", 6)]


async def waits_empty_within(consumer: Any, seconds: float) -> bool:
    """Whether the consumer's ``wait_empty`` returns within ``seconds``; if not, it is ended (its loop
    stops once the consumer is stopping) so that the test can fail rather than hang."""
    task = asyncio.ensure_future(consumer.wait_empty())
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        consumer._stopped.set()
        await task
    return bool(done)


class HeldMessage:
    """A delivered message, as far as acknowledgement goes."""

    def __init__(self, offset: int, tp: Any = None) -> None:
        self.offset = offset
        self.tp = tp
        self.acked = False
        self.refcount = 1


async def test_at_shutdown_a_batch_still_being_gathered_is_not_waited_for(tmp_path) -> None:
    """An agent gathering a batch waits for a record that the shutdown's cleared queues never give it:
    Faust's wait for every delivered message to be acknowledged would last until the worker is killed.
    At shutdown the gathered messages are abandoned (read again after the restart) instead; while the
    worker runs (a rebalance) they are waited for as before."""
    consumer = app_consumer(tmp_path)
    held, handed = HeldMessage(7), HeldMessage(8)
    for message in (held, handed):
        consumer._unacked_messages.add(message)
    consumer.gathering.add(held)
    committed: list[bool] = []

    async def commit(*args: Any, **kwargs: Any) -> bool:
        committed.append(True)
        handed.acked = True  # the batch handed over is acknowledged meanwhile
        consumer._unacked_messages.discard(handed)
        return True

    consumer.commit = commit
    consumer.app._stopped.set()  # the app is stopping
    assert await waits_empty_within(consumer, 5)
    assert held.acked and held not in consumer._unacked_messages and not consumer.gathering
    assert committed  # Faust's wait (and its commits) went on for the rest


async def test_a_rebalance_does_not_wait_for_a_batch_being_gathered(tmp_path) -> None:
    """At a rebalance the gathered messages are not waited for (the agent waits for its next record,
    which comes only once the rebalance is over) nor abandoned: handed on afterwards, those of a
    partition still held are tracked again until acknowledged, the others abandoned."""
    consumer = app_consumer(tmp_path)
    kept_tp, gone_tp = TopicPartition("clickstream", 0), TopicPartition("clickstream", 1)
    kept, gone = HeldMessage(3, kept_tp), HeldMessage(4, gone_tp)
    for message in (kept, gone):
        consumer._unacked_messages.add(message)
        consumer.gathering.add(message)

    async def commit(*args: Any, **kwargs: Any) -> bool:
        return True

    consumer.commit = commit
    assert await waits_empty_within(consumer, 5)  # the app runs: a rebalance
    assert not kept.acked and not gone.acked and set(consumer.rebalanced) == {kept, gone}
    consumer.assignment = lambda: {kept_tp}
    assert consumer.still_held(kept) and kept in consumer._unacked_messages and not kept.acked
    assert not consumer.still_held(gone) and gone.acked and gone not in consumer._unacked_messages
    assert not consumer.rebalanced

"""The batch guard of the agents: a batch is what waits in the agent's queue (nothing waits for a batch
to fill), acknowledged once handled, dead-lettered whole on a fault of the batch, left unacknowledged
when the worker stops."""

from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from streams.contracts.deadletters import StopRequested
from streams.worker.guard import each_batch


class FakeMessage:
    """A Kafka message as the guard sees it: its offset, and whether it was acknowledged."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.acked = False


class FakeStream:
    """A stream whose events arrive in bursts: each burst is in the queue at once, the next one only
    after the agent handled what it took (as records fetched while it was busy)."""

    def __init__(self, bursts: list[list[int]]) -> None:
        self.bursts = deque(deque(burst) for burst in bursts)
        self.acked: list[int] = []
        self.abandoned: list[int] = []
        self.channel = SimpleNamespace(queue=SimpleNamespace(empty=lambda: not self.bursts[0]))
        self.app = SimpleNamespace(
            consumer=SimpleNamespace(
                abandon=self.abandon, gathering=set(), rebalanced=set(), still_held=self.still_held
            )
        )
        self.stop_after: int | None = None  # the worker stops once the agent took this offset
        self.rebalance_after: int | None = None  # a rebalance comes once the agent took this offset
        self.revoked: set[int] = set()  # offsets whose partition the rebalance gives another worker

    def still_held(self, message: Any) -> bool:
        self.app.consumer.rebalanced.discard(message)
        if message.offset in self.revoked:
            self.abandon(message)
            return False
        return True

    def abandon(self, message: Any) -> None:
        message.acked = True
        self.abandoned.append(message.offset)

    def noack(self) -> FakeStream:
        return self

    async def events(self) -> Any:
        while self.bursts:
            if not self.bursts[0]:
                self.bursts.popleft()
                continue
            offset = self.bursts[0].popleft()
            yield SimpleNamespace(message=FakeMessage(offset))
            if offset == self.stop_after:  # what the transport's wait_empty does at shutdown
                for message in list(self.app.consumer.gathering):
                    self.abandon(message)
            if offset == self.rebalance_after:  # and at a rebalance
                self.app.consumer.rebalanced.update(self.app.consumer.gathering)
            await asyncio.sleep(0)

    async def ack(self, event: Any) -> None:
        self.acked.append(event.message.offset)


def run(stream: FakeStream, handle: Any, max_events: int = 100) -> list[tuple[Any, str]]:
    errors: list[tuple[Any, str]] = []

    async def on_error(message: Any, error: Exception) -> None:
        errors.append((message.offset, str(error)))

    asyncio.run(each_batch(stream, handle, on_error, max_events=max_events))  # type: ignore[arg-type]
    return errors


def test_a_batch_is_what_waits_and_is_acknowledged_once_handled() -> None:
    stream = FakeStream([[1], [2, 3, 4], [5, 6, 7, 8, 9]])
    batches: list[list[int]] = []

    async def handle(events: list[Any]) -> None:
        assert not stream.acked or stream.acked[-1] < events[0].message.offset  # acked after, in order
        batches.append([event.message.offset for event in events])

    assert run(stream, handle, max_events=3) == []
    assert batches == [[1], [2, 3, 4], [5, 6, 7], [8, 9]]  # never more than max_events
    assert stream.acked == list(range(1, 10))


def test_a_fault_of_the_batch_dead_letters_its_events_and_a_stop_leaves_them_unacknowledged() -> None:
    stream = FakeStream([[1, 2], [3], [4, 5]])

    async def handle(events: list[Any]) -> None:
        first = events[0].message.offset
        if first == 1:
            raise ValueError("a bug")
        if first == 3:
            raise StopRequested("stopping")

    assert run(stream, handle) == [(1, "a bug"), (2, "a bug")]
    assert stream.acked == [1, 2, 4, 5] and stream.abandoned == [3]


def test_a_cancelled_batch_is_left_unacknowledged() -> None:
    stream = FakeStream([[1, 2]])

    async def handle(events: list[Any]) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        run(stream, handle)
    assert stream.acked == [] and stream.abandoned == [1, 2]


def test_a_batch_still_being_gathered_when_the_worker_stops_is_left_to_the_restart() -> None:
    """The transport abandons what an agent holds in a batch it is gathering when the worker stops
    (:meth:`streams.worker.transport._Consumer.wait_empty`): those events are not handled after all."""
    stream = FakeStream([[1, 2, 3], [4]])
    stream.stop_after = 2
    batches: list[list[int]] = []

    async def handle(events: list[Any]) -> None:
        batches.append([event.message.offset for event in events])

    assert run(stream, handle) == []
    assert sorted(stream.abandoned) == [1, 2] and batches == [[3], [4]] and stream.acked == [3, 4]
    assert not stream.app.consumer.gathering


def test_a_batch_gathered_across_a_rebalance_is_handled_less_what_another_worker_now_holds() -> None:
    """A rebalance does not wait for a batch being gathered (its agent gets its next record only once
    the flow resumes); the agent then hands it on, less the events of partitions gone to another
    worker, which are abandoned for their new owner to read."""
    stream = FakeStream([[1, 2, 3], [4]])
    stream.rebalance_after, stream.revoked = 2, {1}
    batches: list[list[int]] = []

    async def handle(events: list[Any]) -> None:
        batches.append([event.message.offset for event in events])

    assert run(stream, handle) == []
    assert batches == [[2, 3], [4]] and stream.acked == [2, 3, 4] and stream.abandoned == [1]
    assert not stream.app.consumer.gathering and not stream.app.consumer.rebalanced

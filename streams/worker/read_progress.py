"""How far the agents have read each partition they consume, and which partitions may still hold
records waiting to be read: while they do, the timer sweep holds their clocks at the data's time (a
user whose next event waits unread is not silent).

>>> from types import SimpleNamespace
>>> progress = ReadProgress()
>>> progress.took(SimpleNamespace(tp="events-0", offset=41))
>>> progress.took(SimpleNamespace(tp="events-0", offset=40))  # read again after a seek back
>>> progress.furthest["events-0"]
41
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class InFlight:
    """The envelopes this worker's ``ingest`` has handed to the producer, per partition of the events
    topic: how many are not yet acknowledged, and the furthest offset of those that are. Until the
    per-user agent has read past them, that partition's events wait to be read even though its high
    watermark, as the last fetch saw it, says otherwise (the timer sweep's clocks hold meanwhile).

    >>> flight = InFlight()
    >>> flight.sending(2); flight.waiting(2, next_unread=0)
    True
    >>> flight.sent(2, 41); flight.waiting(2, next_unread=41), flight.waiting(2, next_unread=42)
    (True, False)
    """

    def __init__(self) -> None:
        self._sending: dict[int, int] = {}
        self._furthest: dict[int, int] = {}

    def sending(self, partition: int) -> None:
        self._sending[partition] = self._sending.get(partition, 0) + 1

    def sent(self, partition: int, offset: int | None) -> None:
        """One envelope acknowledged at ``offset`` (None: it failed, and its batch is read again)."""
        self._sending[partition] -= 1
        if offset is not None:
            self._furthest[partition] = max(offset, self._furthest.get(partition, -1))

    def waiting(self, partition: int, next_unread: int) -> bool:
        """Whether envelopes sent to ``partition`` are not yet read, the next one to read at
        ``next_unread``."""
        return self._sending.get(partition, 0) > 0 or self._furthest.get(partition, -1) >= next_unread


class ReadProgress:
    """The furthest offset taken of each partition since its assignment."""

    def __init__(self) -> None:
        self.furthest: dict[Any, int] = {}

    def took(self, message: Any) -> None:
        """An agent took ``message``: the furthest, since a record read again after a seek back
        (:mod:`streams.worker.transport`) is behind records already taken."""
        self.furthest[message.tp] = max(message.offset, self.furthest.get(message.tp, -1))

    def forget(self, partitions: Iterable[Any]) -> None:
        """Revoked partitions: read from their committed offset when they come back."""
        for tp in partitions:
            self.furthest.pop(tp, None)

    async def catching_up(
        self, consumer: Any, active: set[int], source_topics: set[str], events_topic: str, in_flight: InFlight
    ) -> set[int]:
        """The partitions of ``active`` whose events may still wait to be read: those of the events
        topic with records waiting, and all of them while a source partition of this worker's has
        records waiting (its events are re-keyed onto any partition). A partition has records waiting
        while its high watermark is past the furthest record taken, or, none taken since its
        assignment, past the consumer's position; unknown (no fetch answered yet) counts as waiting. An
        events partition also waits while envelopes this worker's ingest sent it are not yet read
        (``in_flight``): the last fetch's high watermark may predate them."""
        behind = set()
        for tp in consumer.assignment():
            source = tp.topic in source_topics
            if not source and (tp.topic != events_topic or tp.partition not in active):
                continue
            highwater = consumer.highwater(tp)
            taken = self.furthest.get(tp)
            if taken is not None:
                next_unread = taken + 1
            else:
                try:
                    next_unread = await consumer.position(tp)
                except Exception:  # no longer assigned: counted as waiting
                    next_unread = None
                if highwater is not None and next_unread is not None and next_unread >= highwater:
                    self.furthest[tp] = next_unread - 1  # all before it was taken before: not asked again
            waiting = highwater is None or next_unread is None or next_unread < highwater
            if source and waiting:
                return set(active)
            if waiting or (not source and in_flight.waiting(tp.partition, next_unread)):
                behind.add(tp.partition)
        return behind

"""What the agents share: the app's tables, topics, senders and in-memory bookkeeping, built once by
:func:`streams.worker.app.create_app`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust

from models.learners import PartitionModels
from models.surge import SurgeRules
from streams.contracts.erasure import ErasedUsers
from streams.contracts.settings import Settings
from streams.domain.clock import PartitionClocks
from streams.domain.policy import Policy
from streams.domain.triggers import PendingTimers
from streams.processes.run import References
from streams.worker.acknowledged import AcknowledgedSender
from streams.worker.statewrites import StateWrites
from streams.worker.stock_reader import StockReader


@dataclass(frozen=True, slots=True)
class Part:
    """One event of an envelope, shaped as the Kafka message a dead letter is made of: the envelope's
    topic, partition and offset, the event's own bytes, and which event of the envelope it is (counted
    from 1; 0: not known), so that two events refused in one envelope make two dead letters."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    item: int = 0


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


@dataclass
class WorkerContext:
    app: faust.App
    settings: Settings
    policy: Policy
    references: References
    users: Any  # the users table (streams.worker.codec.CheckedTable)
    state_writes: StateWrites
    pending_timers: PendingTimers
    clocks: PartitionClocks
    erased_users: ErasedUsers
    horizon: float  # users idle this long (event time, s) are evicted
    acknowledged: AcknowledgedSender
    # (message, reason, detail, rejected_at): dead-letter a message, sent until the broker takes it
    dead_letter: Callable[[Any, str, str, float], Awaitable[None]]
    # (message, error): log what handling it raised, and dead-letter it as processing_error
    processing_failed: Callable[[Any, Exception], Awaitable[None]]
    models_of: Callable[[int], PartitionModels]  # a partition's live models
    learned_since_checkpoint: set[int]  # partitions whose models learned since their last checkpoint
    took: Callable[[Any], None]  # a record of a source or the events topic was taken
    in_flight: InFlight  # envelopes ingest sent that the per-user agent may not have read yet
    stock_reader: StockReader
    surge_rules: SurgeRules
    source_of: dict[str, str]  # source topic -> source
    internal_max_bytes: int

    def put_user(self, partition: int, user_id: str, state: Any) -> None:
        """Store ``state`` now, in the table and its changelog (``partition``: the user's). Explicit: a
        batch holds records of several partitions, and Faust's ``table[key] = value`` takes the
        partition of the last record the agent read."""
        self.users.data[user_id] = state
        self.users.send_changelog(partition, user_id, state)

    def delete_user(self, partition: int, user_id: str) -> None:
        """Delete the user's state, with a tombstone in the changelog (``partition``: the user's)."""
        self.users.data.pop(user_id, None)
        self.users.send_changelog(partition, user_id, None, value_serializer="raw")

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Hand a record to the app's producer, which the worker flushes before it commits offsets."""
        await self.app.producer.send(topic, key, value, partition, None, None)

    @property
    def stopping(self) -> bool:
        return bool(self.app.should_stop)

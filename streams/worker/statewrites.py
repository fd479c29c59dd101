"""Writing users' state to the changelog once per commit instead of once per event.

A Faust table sends a changelog record on every write: every event of a user would send their whole
state (a few kB: features, the examples awaiting a label) to the broker, and a user's events come in
bursts. What the changelog must guarantee is weaker: when an input offset is committed, the state that
event produced can be recovered. So ``track_users`` changes the state in memory and marks the user
(:meth:`StateWrites.changed`); right before every offset commit (a Faust sensor's
``on_commit_initiated``, which runs before Faust flushes its producer and commits), when partitions are
revoked and at shutdown, each marked user's state is sent once (:meth:`StateWrites.take`). A worker
killed before a commit loses those writes, but not the events behind them: they were not committed and
are delivered again.

The users of a batch may be in the middle of their rounds when a commit comes (the agent waits for the
broker to acknowledge the batch's decisions and interventions before it records the states:
:mod:`streams.worker.acknowledged`). Their state objects are then half-way; what the commit needs is their
state as of before the batch, which the batch kept (:class:`streams.domain.batches.BatchRounds`): that is what
gets written, and those users stay marked for the next commit.

>>> writes = StateWrites()
>>> writes.changed("u1"); writes.changed("u2"); writes.changed("u1")
>>> sorted(writes.take())
[('u1', None), ('u2', None)]
>>> writes.take()
[]
>>> writes.changed("u3"); writes.begin("u3", b'{"user_id":"u3"}')
>>> writes.take(), writes.take()  # the round is still going: its snapshot, and again next time
([('u3', b'{"user_id":"u3"}')], [('u3', b'{"user_id":"u3"}')])
>>> writes.end(); writes.changed("u3"); writes.forget("u3"); writes.take()
[]
>>> writes.changed("u4"); writes.changed("u5"); writes.begin("u4", b"{}"); writes.begin("u5", None)
>>> writes.take()  # u5 was new before the batch: nothing to write of them yet
[('u4', b'{}')]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust

from streams.contracts import metrics


class StateWrites:
    """The users whose state changed since it was last sent to the changelog."""

    def __init__(self) -> None:
        self._changed: dict[str, None] = {}  # in the order of their first change: replayed in order
        self._busy: dict[str, bytes | None] = {}  # users in a batch -> their state before it

    def __len__(self) -> int:
        return len(self._changed)

    def begin(self, user_id: str, before: bytes | None) -> None:
        """``user_id`` is in a batch under way; ``before`` is their serialized state before it (None:
        new)."""
        self._busy[user_id] = before

    def end(self) -> None:
        """The batch under way is over (its states recorded, or put back)."""
        self._busy = {}

    def changed(self, user_id: str) -> None:
        self._changed[user_id] = None

    def forget(self, user_id: str) -> None:
        """The user's state was written or deleted by other means (an erasure's tombstone)."""
        self._changed.pop(user_id, None)

    def take(self) -> list[tuple[str, bytes | None]]:
        """The users to write now: ``(user_id, None)`` for their current state, or ``(user_id, bytes)``
        for a user in a batch, whose state as of before it is to be written (and who stays marked)."""
        busy = self._busy
        taken: list[tuple[str, bytes | None]] = [
            (user_id, None) for user_id in self._changed if user_id not in busy
        ]
        marked = {user_id: None for user_id in self._changed if user_id in busy}
        taken += [(user_id, busy[user_id]) for user_id in marked if busy[user_id] is not None]
        self._changed = marked
        return taken

    def write(self, users: Any) -> int:
        """Send what :meth:`take` gives to the changelog of ``users`` (a table whose ``data`` holds the
        current states); how many were written."""
        written = 0
        for user_id, before in self.take():
            state = users.data.get(user_id)
            if state is None:  # erased since
                continue
            if before is None:
                users.send_changelog(state.partition, user_id, state)
            else:  # the user is in a round: their state as of before it
                users.send_changelog(state.partition, user_id, before, value_serializer="raw")
            written += 1
        metrics.STATE_WRITES.inc(written)
        return written


class BeforeCommit(faust.Sensor):
    """Calls ``write`` when a consumer offset commit starts, before Faust flushes its producer."""

    def __init__(self, write: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._write = write

    def on_commit_initiated(self, consumer: Any) -> Any:
        self._write()
        return None

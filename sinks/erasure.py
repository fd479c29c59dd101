"""The right to erasure on the ClickHouse side: a user's rows are deleted once none can still arrive.

The worker removes the user's state from its tables, then sends to the ``erasures`` topic a message
keyed by the raw user id (:func:`streams.contracts.erasure.erasure_record`). The sink reads that topic beside
its data topics and carries the erasure out:

1. **Wait for rows in flight.** Rows of the user produced before the erasure may not be stored yet
   (another topic, a lagging partition, a batch not yet flushed). On reading an erasure the sink
   records the end offset (high watermark) of every partition of every topic it stores; the delete
   waits until, on each of them, everything before that mark is stored: by this sink (its flushed
   position) or, for partitions another member of the sink's group consumes, by the group's committed
   offset, which a sink commits only after the rows are inserted.
2. **Delete**, in every table holding user rows (:func:`erasure_tables`), the rows whose ``user_id``
   is the pseudonym, and only those: every user id column holds pseudonyms (the sink replaces the id
   before storing a row), and nothing else is matched, so an erasure whose id happens to be another
   user's pseudonym, or a word found in other users' messages, deletes nothing of theirs. Dead
   letters are matched the same way, by the user id the sink read from their payload
   (:func:`sinks.rows.payload_user_id`); those stored before that column existed, by the payload's
   ``user_id`` member as ClickHouse parses it (:func:`erasure_condition`). Rows of the user with a
   time up to the erasure that reach the sink after it read the erasure are not stored at all
   (:class:`ErasedUsers`, kept in memory).
3. **Audit**: one row in ``erasures`` (request, who asked, when, rows deleted per table), with neither
   the user id nor the pseudonym: the user leaves no trace, the erasure does.
4. **Commit** the erasure's offset, only now. A sink that stops or crashes before reads the erasure
   again and does it again: deletes are idempotent, and the audit row of a request id is replaced by
   one whose counts add up both runs (ReplacingMergeTree by ``request_id``).

ClickHouse deletes are lightweight ``DELETE FROM`` (the rows vanish from queries at once and from disk
at the next merges), or ``ALTER TABLE ... DELETE`` with ``mutations_sync = 2`` on tables where a
lightweight delete is refused (projections).

>>> import orjson
>>> erasure = Erasure.from_wire(orjson.dumps({"schema": 1, "request_id": "r1", "user_id": "u1",
...     "requested_by": "dpo", "requested_at": "2026-01-02T03:04:05.000Z",
...     "erased_at": "2026-01-02T03:04:06.000Z", "state_removed": True, "source_event_id": "e9"}))
>>> erasure.user_id, erasure.erased_at_ms - erasure.requested_at_ms
('u1', 1000)
>>> queue = ErasureQueue()
>>> queue.add(("erasures", 0), 7, erasure, {("events", 0): 120, ("events", 1): 0})
>>> queue.ready({("events", 0): 119}), queue.waiting()
([], {('events', 0): 120})
>>> [(p.offset, p.erasure.request_id) for p in queue.ready({("events", 0): 120})]
[(7, 'r1')]
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.contracts.erasure import Erasure
from streams.contracts.privacy import DEAD_LETTER_TABLE, UserTable, user_tables

log = logging.getLogger(__name__)

AUDIT_TABLE = "erasures"
REDACTED = "[erased]"


@dataclass
class PendingErasure:
    """An erasure read at ``offset`` of the erasures partition ``source``; ``marks``: the partitions
    whose rows before the given offset must be stored before the delete (passed ones are removed).
    ``erasure`` None: an unreadable message, dead-lettered, only waiting for its turn to be committed."""

    source: Hashable
    offset: int
    erasure: Erasure | None
    marks: dict[Hashable, int] = field(default_factory=dict)


class ErasureQueue:
    """Erasures read and not yet carried out, in the order read (which is the order they are done and
    committed in: an erasure's offset is committed only after every earlier one of its partition)."""

    def __init__(self) -> None:
        self._pending: deque[PendingErasure] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, source: Hashable, offset: int, erasure: Erasure | None, marks: Mapping[Any, int]) -> None:
        # A partition with nothing before its mark has nothing to wait for.
        waiting = {partition: mark for partition, mark in marks.items() if mark > 0}
        self._pending.append(PendingErasure(source, offset, erasure, waiting))

    def ready(self, stored_to: Mapping[Any, int]) -> list[PendingErasure]:
        """Take the erasures, from the head, whose marks ``stored_to`` (partition -> offset before which
        every row is stored) has reached."""
        for pending in self._pending:
            for partition in [p for p, mark in pending.marks.items() if stored_to.get(p, -1) >= mark]:
                del pending.marks[partition]
        done = []
        while self._pending and not self._pending[0].marks:
            done.append(self._pending.popleft())
        return done

    def waiting(self) -> dict[Any, int]:
        """The head erasure's partitions still short of their marks."""
        return dict(self._pending[0].marks) if self._pending else {}

    def drop(self, sources: Iterable[Hashable]) -> int:
        """Forget the erasures read from ``sources`` (partitions revoked: their new owner reads them again
        from the last commit). Returns how many were dropped."""
        gone = set(sources)
        kept = deque(p for p in self._pending if p.source not in gone)
        dropped = len(self._pending) - len(kept)
        self._pending = kept
        return dropped


def erasure_tables(store: Any, specs: Iterable[Any]) -> list[UserTable]:
    """The tables an erasure deletes from: :func:`streams.contracts.privacy.user_tables` of the sink's specs,
    the dead letters, plus any other table of the database with a ``user_id`` column (a table added
    without being listed is erased all the same, and named in a warning so that it gets listed)."""
    tables = {t.table: t for t in user_tables(specs)}
    existing = store.tables()
    missing = sorted(name for name in tables if name not in existing)
    if missing:
        raise ValueError(f"tables holding user rows do not exist in ClickHouse: {missing}")
    if DEAD_LETTER_TABLE.table in existing:  # also when this sink does not store them
        tables.setdefault(DEAD_LETTER_TABLE.table, DEAD_LETTER_TABLE)
    unlisted = sorted(name for name in store.tables_with_column("user_id") if name not in tables)
    if unlisted:
        log.warning(
            "tables with a user_id column not listed in streams.contracts.privacy: %s (erased too)", unlisted
        )
    for name in unlisted:
        tables[name] = UserTable(name, "user_id", None)
    return list(tables.values())


def erasure_condition(table: UserTable) -> str:
    """The SQL condition selecting the erased user's rows of ``table``, over the parameters
    ``pseudonym`` and ``raw`` (the user id as the erasure names it).

    The user column equal to the pseudonym, exactly. Dead letters stored before they had a user column
    (``user_id`` empty) hold the raw id in their original bytes only: such a row is the user's when
    its payload is a JSON object whose ``user_id`` member is the raw id, as ClickHouse parses it. A
    newer row has an empty column when its payload names nobody, so this matches none of those.

    >>> erasure_condition(UserTable("events", "user_id", "event_time"))
    'user_id = {pseudonym:String}'
    """
    condition = f"{table.user_column} = {{pseudonym:String}}"
    if table.table == DEAD_LETTER_TABLE.table:
        condition += " OR (user_id = '' AND JSONExtractString(payload, 'user_id') = {raw:String})"
    return condition


def erase_user(store: Any, tables: Iterable[UserTable], erasure: Erasure, pseudonym: str) -> dict[str, int]:
    """Delete the user's rows from ``tables`` (:func:`erasure_condition`); rows deleted per table
    (counted just before each delete)."""
    ids = {"pseudonym": pseudonym, "raw": erasure.user_id}
    return {
        table.table: store.delete_where(table.table, erasure_condition(table), ids)
        for table in tables
        if table.user_column is not None
    }


def redact(text: str, user_id: str) -> str:
    """``text`` without ``user_id`` in it (a request id or requester may be made from it).

    >>> redact("erase-u17-now", "u17")
    'erase-[erased]-now'
    """
    return text.replace(user_id, REDACTED) if user_id else text


def record_erasure(
    store: Any, erasure: Erasure, rows_deleted: Mapping[str, int], completed_at_ms: int | None = None
) -> dict[str, int]:
    """Insert the audit row of an erasure (no user id, no pseudonym); a request id audited before (an
    erasure done again after a crash) gets one row whose counts add up both. Returns those counts."""
    completed_at_ms = round(time.time() * 1000) if completed_at_ms is None else completed_at_ms
    request_id = redact(erasure.request_id, erasure.user_id)
    totals = dict(rows_deleted)
    for (before,) in store.query(
        f"SELECT rows_deleted FROM {AUDIT_TABLE} FINAL WHERE request_id = {{id:String}}", {"id": request_id}
    ):
        for table, count in before.items():
            totals[table] = totals.get(table, 0) + count
    row = (
        request_id,
        redact(erasure.requested_by, erasure.user_id),
        erasure.requested_at_ms,
        erasure.erased_at_ms,
        completed_at_ms,
        int(erasure.state_removed),
        totals,
    )
    columns = (
        "request_id",
        "requested_by",
        "requested_at",
        "erased_at",
        "completed_at",
        "state_removed",
        "rows_deleted",
    )
    store.insert(AUDIT_TABLE, columns, [row], f"erasure:{request_id}:{completed_at_ms}")
    return totals

"""The ``erasures`` topic: what the worker tells the sink once it erased a user, and the users erased
lately, whose late rows are not stored.

>>> import orjson
>>> erasure = Erasure.from_wire(orjson.dumps({"schema": 1, "request_id": "r1", "user_id": "u1",
...     "requested_by": "dpo", "requested_at": "2026-01-02T03:04:05.000Z",
...     "erased_at": "2026-01-02T03:04:06.000Z", "state_removed": True, "source_event_id": "e9"}))
>>> erasure.user_id, erasure.erased_at_ms - erasure.requested_at_ms
('u1', 1000)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from streams.contracts.events import Event
from streams.contracts.time import iso_millis, iso_time

ERASURE_SCHEMA = 1


def erasure_record(event: Event, state_removed: bool, wall: float) -> dict[str, Any]:
    """What the worker sends to the ``erasures`` topic once it removed the user's state; the sink then
    removes the user's rows from ClickHouse (:mod:`sinks.erasure`), which reads it with
    :meth:`Erasure.from_wire`."""
    return {
        "schema": ERASURE_SCHEMA,
        "request_id": event.attrs["request_id"],
        "user_id": event.user_id,
        "requested_by": event.attrs["requested_by"],
        "requested_at": iso_time(event.event_time),
        "erased_at": iso_time(wall),
        "state_removed": state_removed,
        "source_event_id": event.event_id,
    }


@dataclass(frozen=True, slots=True)
class Erasure:
    """An erasure the worker carried out (the ``erasures`` topic, schema 1); times in epoch ms."""

    request_id: str
    user_id: str
    requested_by: str
    requested_at_ms: int
    erased_at_ms: int
    state_removed: bool
    source_event_id: str

    @classmethod
    def from_wire(cls, value: bytes | None) -> Erasure:
        """Read one message; ``ValueError`` (naming what is wrong) when it is not a schema 1 erasure."""
        try:
            data = orjson.loads(value or b"")
        except orjson.JSONDecodeError as error:
            raise ValueError(f"not JSON: {error}") from None
        if not isinstance(data, dict) or data.get("schema") != ERASURE_SCHEMA:
            raise ValueError(f"not an erasure of schema {ERASURE_SCHEMA}")
        try:
            erasure = cls(
                request_id=_text(data, "request_id"),
                user_id=_text(data, "user_id"),
                requested_by=_text(data, "requested_by", required=False),
                requested_at_ms=iso_millis(_text(data, "requested_at")),
                erased_at_ms=iso_millis(_text(data, "erased_at")),
                state_removed=bool(data.get("state_removed", False)),
                source_event_id=_text(data, "source_event_id", required=False),
            )
        except (TypeError, ValueError) as error:
            raise ValueError(str(error)) from None
        return erasure


def _text(data: dict[str, Any], name: str, required: bool = True) -> str:
    value = data.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"field {name!r} must be a non-empty string")
    return value


class ErasedUsers:
    """Pseudonyms erased lately and when: a row of one of them timed up to its erasure that reaches the
    sink afterwards (a replay, an upstream retry) is not stored. Bounded (oldest forgotten first) and in
    memory only: after a restart, the delete of a re-read erasure is what catches such rows.

    >>> erased = ErasedUsers(limit=2)
    >>> erased.add("p1", 1000)
    >>> erased.drops("p1", 999), erased.drops("p1", 1001), erased.drops("p2", 0)
    (True, False, False)
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._erased_at: OrderedDict[str, int] = OrderedDict()

    def add(self, pseudonym: str, erased_at_ms: int) -> None:
        self._erased_at[pseudonym] = max(erased_at_ms, self._erased_at.pop(pseudonym, erased_at_ms))
        while len(self._erased_at) > self.limit:
            self._erased_at.popitem(last=False)

    def drops(self, pseudonym: str, row_time_ms: int) -> bool:
        erased_at = self._erased_at.get(pseudonym)
        return erased_at is not None and row_time_ms <= erased_at

"""Envelopes: several validated events of one partition of ``forewarn-events`` in one Kafka message.

``ingest`` validates the raw messages it reads as a batch and sends each partition of
``forewarn-events`` one message holding that partition's events, in the order they were read; the
per-user agent then pays Faust's per-message cost once per envelope instead of once per event, and
handles the envelope as one batch (:mod:`streams.domain.batches`). Producers do not change: they still send
one event per message to the source topics.

An envelope is the JSON object ``{"envelope": 1, "events": [<event>, ...]}``, each event in the form
of :meth:`streams.contracts.events.Event.to_wire`. A message holding a single event in that form (written by a
worker of an earlier version, or by hand) is read as an envelope of one. Each event of an envelope is
checked on its own when read (:func:`read_envelope`): a bad one is refused alone, its neighbours are
taken. A message that is not an envelope at all is refused as a whole.

A user's events always go to the partition of their key, as Faust's producer would send them
(:func:`user_partition`), so their state stays on one partition.

>>> from streams.contracts.events import Event
>>> events = [Event(f"e{i}", "page_view", "clickstream", 1.7e9 + i, f"u{i % 2}",
...                 {"session_id": "s", "page": "/"}) for i in range(3)]
>>> [[e.event_id for e in part] for part in split_by_partition(events, 4).values()]
[['e0', 'e2'], ['e1']]
>>> [len(batch) for batch, value in pack(events, max_bytes=400)]
[2, 1]
>>> read = read_envelope(pack(events)[0][1])
>>> [event.event_id for event in read]
['e0', 'e1', 'e2']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from streams.contracts.events import Event, InvalidEvent, read_json_object
from streams.contracts.internal import INVALID_INTERNAL, internal_refusal, wire_event_from_object

ENVELOPE_VERSION = 1
# Below Kafka's default largest message (1 MB) with room for the record's own overhead.
MAX_ENVELOPE_BYTES = 900 * 1024
MAX_ENVELOPE_EVENTS = 1000


def user_partition(user_id: str, partitions: int) -> int:
    """The user's partition of the events topic and of the ``users`` table: what the producer's default
    partitioner (murmur2, as Kafka's Java client) gives for the raw id bytes.

    >>> user_partition("u1", 4), user_partition("alice", 4)
    (0, 1)
    """
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def split_by_partition(events: Iterable[Event], partitions: int) -> dict[int, list[Event]]:
    """``events`` grouped by the partition of their user, each group in the order given."""
    groups: dict[int, list[Event]] = {}
    for event in events:
        groups.setdefault(user_partition(event.user_id, partitions), []).append(event)
    return groups


def pack(
    events: list[Event], *, max_bytes: int = MAX_ENVELOPE_BYTES, max_events: int = MAX_ENVELOPE_EVENTS
) -> list[tuple[list[Event], bytes]]:
    """``events`` as envelopes in order: ``(events, message value)``, each at most ``max_events``
    events and, unless it holds one event only, ``max_bytes``."""
    out: list[tuple[list[Event], bytes]] = []
    batch: list[Event] = []
    wires: list[bytes] = []
    size = 0
    for event in events:
        wire = orjson.dumps(event.to_wire())
        if batch and (len(batch) >= max_events or size + len(wire) + 32 > max_bytes):
            out.append((batch, _envelope(wires)))
            batch, wires, size = [], [], 0
        batch.append(event)
        wires.append(wire)
        size += len(wire) + 1
    if batch:
        out.append((batch, _envelope(wires)))
    return out


def _envelope(wires: list[bytes]) -> bytes:
    return b'{"envelope":1,"events":[' + b",".join(wires) + b"]}"


def read_envelope(
    raw: bytes | None, max_bytes: int = MAX_ENVELOPE_BYTES + 64 * 1024
) -> list[Event | Refused]:
    """The events of one ``forewarn-events`` message, in order: each an :class:`Event`, or the
    :class:`Refused` item (reason ``invalid_internal``) that stands for it alone. Raises
    :class:`InvalidEvent` when the message is neither an envelope nor a single event."""
    try:
        data = read_json_object(raw, max_bytes)
    except InvalidEvent as error:
        raise InvalidEvent(INVALID_INTERNAL, f"{error.reason}: {error.detail}") from None
    if "envelope" not in data:
        return [_read_one(data)]
    version, events = data.get("envelope"), data.get("events")
    if version != ENVELOPE_VERSION or isinstance(version, bool):
        raise InvalidEvent(
            INVALID_INTERNAL, f"unsupported_schema: envelope {str(version)[:32]!r} (expected 1)"
        )
    if not isinstance(events, list):
        raise InvalidEvent(INVALID_INTERNAL, "wrong_type: field 'events' must be a list")
    return [_read_one(item) for item in events]


@dataclass(frozen=True, slots=True)
class Refused:
    """An event of an envelope that failed its checks: why, and its JSON (what is dead-lettered)."""

    error: InvalidEvent
    value: bytes


def _read_one(item: Any) -> Event | Refused:
    try:
        if not isinstance(item, dict):
            kind = type(item).__name__
            raise InvalidEvent(INVALID_INTERNAL, f"not_an_object: expected a JSON object, got {kind}")
        with internal_refusal():
            return wire_event_from_object(item)
    except InvalidEvent as error:
        return Refused(error, orjson.dumps(item))

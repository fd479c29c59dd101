"""Kafka messages to ClickHouse rows, one pure function per table.

Each function takes the message's value, headers, partition and offset, and returns the row in the
order of its table's ``COLUMNS``; a value it cannot read raises ``ValueError``.

>>> import orjson
>>> value = orjson.dumps({"event_id": "e1", "event_type": "page_view", "source": "clickstream",
...     "event_time": 1764000000000, "user_id": "u1", "attrs": {"page": "/", "session_id": "s1"}})
>>> event_row(value, [], 2, 40)[:6]
('e1', 'clickstream', 'page_view', 1764000000000, 'u1', 's1')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from streams.contact import DECISION_KINDS
from streams.deadletters import read_dead_letter_headers

Headers = Sequence[tuple[str, bytes]]


def iso_millis(iso: str) -> int:
    """An ISO 8601 time of the contracts (as :func:`streams.interventions.iso_time` writes) to epoch ms."""
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def event_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    data = orjson.loads(value)
    attrs = data["attrs"]
    return (
        data["event_id"],
        data["source"],
        data["event_type"],
        int(data["event_time"]),
        data["user_id"],
        attrs.get("session_id", ""),
        attrs.get("order_id", ""),
        attrs.get("shipment_id", ""),
        attrs.get("page", ""),
        orjson.dumps(attrs).decode(),
        partition,
        offset,
    )


def intervention_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    data = orjson.loads(value)
    return (
        data["intervention_id"],
        data["trigger"],
        data["action"],
        data["channel"],
        data["user_id"],
        iso_millis(data["event_time"]),
        iso_millis(data["decided_at"]),
        data["reason"],
        data["source_event_id"],
        orjson.dumps(data["evidence"]).decode(),
        partition,
        offset,
    )


def decision_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A contact-policy decision (the ``decisions`` topic, schema 1).

    The intervention id is normalized to the canonical lower-case form, so that the row id the sink
    remembers equals ``toString(intervention_id)`` read back from ClickHouse.

    >>> value = orjson.dumps({"intervention_id": "0B8A6128-0B8A-5EE9-BFAB-18E8F49F0582",
    ...     "decision": "suppressed", "reason": "holdout", "detail": "", "trigger": "delay_notice",
    ...     "action": "notify_delay", "channel": "chat", "priority": 80, "experiment": "q4",
    ...     "arm": "holdout", "offer": None, "user_id": "u1", "event_time": "2026-11-24T03:49:32.102Z",
    ...     "decided_at": "2026-11-24T03:49:33.260Z", "source_event_id": "l2", "order_id": "o1"})
    >>> row = decision_row(value, [], 0, 7)
    >>> DECISIONS.row_id(row), row[10], row[12]
    ('0b8a6128-0b8a-5ee9-bfab-18e8f49f0582:suppressed', '', 1795492172102)
    """
    data = orjson.loads(value)
    decision = data["decision"]
    if decision not in DECISION_KINDS:
        raise ValueError(f"unknown decision {decision!r}")
    offer = data.get("offer")
    return (
        str(UUID(data["intervention_id"])),
        decision,
        data["reason"],
        data.get("detail", ""),
        data["trigger"],
        data["action"],
        data["channel"],
        int(data["priority"]),
        data.get("experiment", ""),
        data.get("arm", ""),
        "" if offer is None else orjson.dumps(offer).decode(),
        data["user_id"],
        iso_millis(data["event_time"]),
        iso_millis(data["decided_at"]),
        data.get("source_event_id", ""),
        data.get("order_id", ""),
        partition,
        offset,
    )


def score_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A user's published scores (the ``user_scores`` topic, schema 1)."""
    data = orjson.loads(value)
    intent = data["intent"]
    return (
        data["user_id"],
        iso_millis(data["scored_at"]),
        data["event_id"],
        float(intent["purchase"]),
        float(intent["need_help"]),
        float(intent["browse"]),
        float(intent["leave"]),
        max(intent, key=intent.__getitem__),
        float(data["churn"]),
        int(data["health"]),
        data["satisfaction"],
        int(data["intent_examples"]),
        int(data["churn_examples"]),
        partition,
        offset,
    )


def dead_letter_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    info = read_dead_letter_headers(headers)
    payload = value or b""
    return (
        info.source_topic,
        info.source_partition,
        info.source_offset,
        info.reason,
        info.detail,
        round(info.rejected_at * 1000),
        payload,
        len(payload),
        partition,
        offset,
    )


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: str
    columns: tuple[str, ...]
    to_row: Callable[[bytes, Headers, int, int], tuple[Any, ...]]
    # The row's natural id: a row position, and the same as a ClickHouse expression over the table.
    id_index: int | tuple[int, ...]
    id_sql: str

    def row_id(self, row: tuple[Any, ...]) -> str:
        if isinstance(self.id_index, int):
            return str(row[self.id_index])
        return ":".join(str(row[index]) for index in self.id_index)


EVENTS = TableSpec(
    "events",
    (
        "event_id",
        "source",
        "event_type",
        "event_time",
        "user_id",
        "session_id",
        "order_id",
        "shipment_id",
        "page",
        "attrs",
        "kafka_partition",
        "kafka_offset",
    ),
    event_row,
    id_index=0,
    id_sql="event_id",
)
INTERVENTIONS = TableSpec(
    "interventions",
    (
        "intervention_id",
        "trigger",
        "action",
        "channel",
        "user_id",
        "event_time",
        "decided_at",
        "reason",
        "source_event_id",
        "evidence",
        "kafka_partition",
        "kafka_offset",
    ),
    intervention_row,
    id_index=0,
    id_sql="toString(intervention_id)",
)
DEAD_LETTERS = TableSpec(
    "dead_letters",
    (
        "source_topic",
        "source_partition",
        "source_offset",
        "reason",
        "detail",
        "rejected_at",
        "payload",
        "payload_bytes",
        "kafka_partition",
        "kafka_offset",
    ),
    dead_letter_row,
    id_index=(0, 1, 2),
    id_sql="concat(source_topic, ':', toString(source_partition), ':', toString(source_offset))",
)
DECISIONS = TableSpec(
    "decisions",
    (
        "intervention_id",
        "decision",
        "reason",
        "detail",
        "trigger",
        "action",
        "channel",
        "priority",
        "experiment",
        "arm",
        "offer",
        "user_id",
        "event_time",
        "decided_at",
        "source_event_id",
        "order_id",
        "kafka_partition",
        "kafka_offset",
    ),
    decision_row,
    # A deferred intervention has a second, final decision later: the id is the pair.
    id_index=(0, 1),
    id_sql="concat(toString(intervention_id), ':', decision)",
)
SCORES = TableSpec(
    "user_scores",
    (
        "user_id",
        "scored_at",
        "event_id",
        "intent_purchase",
        "intent_need_help",
        "intent_browse",
        "intent_leave",
        "top_intent",
        "churn",
        "health",
        "satisfaction",
        "intent_examples",
        "churn_examples",
        "kafka_partition",
        "kafka_offset",
    ),
    score_row,
    # Two scores of a user can share an event time (a late event, two events in one millisecond): the
    # event scored tells them apart.
    id_index=(0, 1, 2),
    id_sql="concat(user_id, ':', toString(toUnixTimestamp64Milli(scored_at)), ':', event_id)",
)

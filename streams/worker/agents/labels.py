"""``ingest_labels``: people's corrections of feedback tags and of chat messages' emotions in, each
sent to every partition of ``forewarn-labels``, so that every partition's tagger and emotion model
learn every correction (``track_users`` reads them there:
:func:`streams.worker.agents.users.learn_correction`)."""

from __future__ import annotations

import time

import faust

from streams.contracts import metrics
from streams.contracts.events import InvalidEvent
from streams.contracts.feedback import parse_label
from streams.worker.context import WorkerContext
from streams.worker.guard import AgentFunction, each_event


def agent(ctx: WorkerContext) -> AgentFunction:
    """The ``ingest_labels`` agent, for the ``feedback_labels`` topic."""

    async def ingest_labels(stream: faust.StreamT) -> None:
        await each_event(stream, lambda event: broadcast_label(ctx, event), ctx.processing_failed)

    return ingest_labels


async def broadcast_label(ctx: WorkerContext, event: faust.EventT) -> None:
    """Check one correction (a bad one is dead-lettered with its reason) and send it to every partition."""
    message = event.message
    try:
        correction = parse_label(message.value, max_bytes=ctx.settings.max_event_bytes)
    except InvalidEvent as error:
        await ctx.dead_letter(message, error.reason, error.detail, time.time())
        return
    metrics.FEEDBACK_LABELS.inc()
    for partition in range(ctx.settings.partitions):
        await ctx.topics.labels.send(
            key=correction.label_id.encode(), value=correction.to_wire(), partition=partition
        )

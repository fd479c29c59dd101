"""The guards every agent runs its events through: whatever handling an event raises, the event is
dead-lettered (``processing_error``), never left unacknowledged; an event not finished because the
worker stops is left for the restart to read again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

from streams.contracts.deadletters import StopRequested

# What an agent module hands to ``app.agent``: the function Faust runs over the agent's stream.
AgentFunction = Callable[[faust.StreamT], Awaitable[None]]


async def each_event(
    stream: faust.StreamT,
    handle: Callable[[faust.EventT], Awaitable[None]],
    on_error: Callable[[Any, Exception], Awaitable[None]],
) -> None:
    """Run ``handle`` on each event of an agent's ``stream``; acknowledge the event once it is done.

    Whatever ``handle`` raises is given to ``on_error`` with the event's message (to dead-letter it):
    an agent that raised would stop, and the event it held would never be acknowledged, so every
    rebalance and the shutdown would wait for it for ever (Faust's ``wait_empty``), and a restarted
    agent would have it committed past. An event whose dead letter cannot be sent before the worker stops
    (:class:`streams.contracts.deadletters.StopRequested`) is left unacknowledged without the shutdown waiting
    for it: it is read again after the restart.

    Faust acknowledges an event in a ``finally`` around its ``yield``: an agent cancelled while handling
    an event (a worker stopping mid-send) would still acknowledge it, and the commit at shutdown would
    move past an event whose output was never sent. An event the body did not finish is never
    acknowledged here: it is delivered again after the restart (where it did get through, the user's
    state recognises it: :func:`streams.domain.state.first_delivery`)."""
    manual = stream.noack()
    async for event in manual.events():
        try:
            try:
                await handle(event)
            except StopRequested:
                raise
            except Exception as error:
                await on_error(event.message, error)
        except StopRequested:
            event.app.consumer.abandon(event.message)
            continue
        await manual.ack(event)


async def each_batch(
    stream: faust.StreamT,
    handle: Callable[[Sequence[faust.EventT]], Awaitable[None]],
    on_error: Callable[[Any, Exception], Awaitable[None]],
    *,
    max_events: int,
) -> None:
    """Run ``handle`` on batches of an agent's ``stream``; the batch's events are acknowledged once it
    is done.

    A batch is what is there to take: events are added while more wait in the agent's queue, up to
    ``max_events``, and the batch is handled as soon as the queue is empty. So nothing waits for a
    batch to fill (an event alone is a batch of one), and the batch grows by itself while the agent is
    busy (a backlog, a slow acknowledgement): the per-batch costs are spread the more, the more there is
    to do.

    What ``handle`` raises is given to ``on_error`` for each event of the batch (to dead-letter them):
    ``handle`` deals with each event's own failures, so this is a fault of the batch as a whole. A batch
    not finished because the worker stops (a dead letter or a send not taken before it stopped:
    :class:`streams.contracts.deadletters.StopRequested`, or the agent cancelled) is left unacknowledged
    without the shutdown waiting for it (:meth:`streams.worker.transport._Consumer.abandon`), and so is
    a batch still being gathered when the worker stops: it is read again after the restart, and what of
    it got through is recognised then (each user's state knows its events). A rebalance does not wait for
    a batch being gathered either: it is handled once the flow resumes, less what its partitions' new
    owners will read (:meth:`streams.worker.transport._Consumer.still_held`)."""
    consumer = stream.app.consumer
    waiting = stream.channel.queue
    manual = stream.noack()
    batch: list[faust.EventT] = []
    gathering = consumer.gathering
    async for event in manual.events():
        batch.append(event)
        if len(batch) < max_events and not waiting.empty():
            gathering.add(event.message)  # until handed over: neither a shutdown nor a rebalance waits for it
            continue
        events, batch = batch, []
        for taken in events:
            gathering.discard(taken.message)
        # Those abandoned meanwhile (the worker is stopping) are left to the restart; after a rebalance
        # came meanwhile, those of partitions gone to another worker are left to it.
        rebalanced = consumer.rebalanced
        events = [
            taken
            for taken in events
            if not taken.message.acked
            and (taken.message not in rebalanced or consumer.still_held(taken.message))
        ]
        if not events:
            continue
        try:
            try:
                await handle(events)
            except StopRequested:
                raise
            except Exception as error:
                for event in events:
                    await on_error(event.message, error)
        except StopRequested:
            for event in events:
                consumer.abandon(event.message)
            continue
        except BaseException:
            for event in events:
                consumer.abandon(event.message)
            raise
        for event in events:
            await manual.ack(event)

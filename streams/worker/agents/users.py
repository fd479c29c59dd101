"""``track_users``: the only writer of users' state.

Its input is keyed by partition of user: envelopes of validated events (:mod:`streams.contracts.envelopes`),
the timer sweep's ticks and the feedback corrections, each checked again as it is read (internal topics
are input too: :mod:`streams.contracts.internal`).

The agent takes what waits to be read as one batch (:func:`streams.worker.guard.each_batch`: the
longer a batch takes, the more the next one holds), and its behaviour rounds run together
(:class:`Batch`, a :class:`streams.domain.batches.BatchRounds` per partition):

* the rounds of every event and tick, in order, each user's state taken once;
* then one acknowledged send of all their decisions and interventions;
* then the states are recorded (in memory now, in the changelog before the next offset commit:
  :mod:`streams.worker.statewrites`), and the scores, tagged feedback and ``crm_sync`` records are sent.

A commit during that send writes the batch's users as they were before it; a worker stopping during it
puts them back, and reads the batch's records again after its restart. A round that raises is undone
and dead-letters its own event only.

* A process input of an envelope (a device, a repair or order request, CRM attributes, an erasure) ends
  the batch before it and is handled on its own (:func:`streams.processes.run.run_process`).
* A tick makes a round, unless its user is gone (erased since it was sent) or idle past the horizon
  (evicted: :mod:`streams.domain.eviction`).
* A correction trains the partition's feedback tagger, or its emotion model of chat messages.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson

from streams.contracts import metrics
from streams.contracts.deadletters import send_until_taken
from streams.contracts.envelopes import Refused, read_envelope
from streams.contracts.erasure import erasure_record
from streams.contracts.events import (
    CRM_UPDATES,
    ERASURE_REQUESTS,
    ORDER_REQUESTS,
    PROCESS_SOURCES,
    Event,
    InvalidEvent,
)
from streams.contracts.feedback import Correction, EmotionCorrection
from streams.contracts.internal import read_correction, read_tick
from streams.contracts.time import to_millis
from streams.domain.batches import BatchRounds
from streams.domain.contact import EMITTED
from streams.domain.eviction import evictable, evicted
from streams.domain.rounds import StateSnapshot
from streams.domain.state import UserState
from streams.processes.desk import TicketProgress
from streams.processes.orders import OrderCommand
from streams.processes.run import crm_sync_record, run_process
from streams.worker.context import WorkerContext
from streams.worker.guard import AgentFunction, each_batch

log = logging.getLogger(__name__)

# Most records track_users takes as one batch: envelopes, each of up to MAX_ENVELOPE_EVENTS events.
USER_BATCH_MESSAGES = 50


def agent(ctx: WorkerContext) -> AgentFunction:
    """The ``track_users`` agent, for the events, ticks and labels topics."""

    async def track_users(stream: faust.StreamT) -> None:
        await each_batch(
            stream,
            lambda events: track_batch(ctx, events),
            ctx.processing_failed,
            max_events=USER_BATCH_MESSAGES,
        )

    return track_users


async def track_batch(ctx: WorkerContext, events: Sequence[faust.EventT]) -> None:
    """The records the agent took at once (:func:`streams.worker.guard.each_batch`): envelopes, ticks
    and corrections, each checked again as it is read, their behaviour rounds run as one batch."""
    settings = ctx.settings
    batch = Batch(ctx)
    for event in events:
        message = event.message
        ctx.took(message)
        topic = message.topic
        try:
            if topic == settings.topic_events:
                items = read_envelope(message.value)
            elif topic == settings.topic_labels:
                correction = read_correction(message.value, ctx.internal_max_bytes)
            else:
                tick = read_tick(message.value, ctx.internal_max_bytes)
        except InvalidEvent as error:
            await ctx.dead_letter(message, error.reason, error.detail, time.time())
            continue
        if topic == settings.topic_events:
            for number, item in enumerate(items, 1):
                if isinstance(item, Refused):
                    part = Part(
                        message.topic, message.partition, message.offset, message.key, item.value, number
                    )
                    await ctx.dead_letter(part, item.error.reason, item.error.detail, time.time())
                elif item.source in PROCESS_SOURCES:  # handled on its own, after what came before it
                    await batch.finish()
                    await handle_process(ctx, message, item)
                else:
                    batch.add(message, item)
        elif topic == settings.topic_labels:
            learn_correction(ctx, message.partition, correction)
        else:
            if batch.has(tick["user_id"]):  # its checks read the state this batch leaves
                await batch.finish()
            if take_tick(ctx, message.partition, tick):
                batch.add(message, tick)
    await batch.finish()


@dataclass(frozen=True, slots=True)
class Part:
    """One event of an envelope, shaped as the Kafka message a dead letter is made of: the envelope's
    topic, partition and offset, the event's own bytes, and which event of the envelope it is (counted
    from 1; 0: not known), so that two events refused in one envelope make two dead letters."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    item: int = 0


def take_tick(ctx: WorkerContext, partition: int, tick: dict[str, Any]) -> bool:
    """Whether ``tick`` makes a round: not when its user is gone (erased since it was sent) or idle past
    the horizon (evicted now)."""
    user_id, now = tick["user_id"], tick["now"] / 1000.0
    stored = ctx.users.get(user_id)
    if stored is None:
        ctx.pending_timers.answered(user_id)
        return False
    if evictable(stored, ctx.horizon, now):
        evict(ctx, partition, user_id, stored, now)
        return False
    ctx.pending_timers.answered(user_id)
    # A tick is saved and filed again even when nothing fired: the user's timers may have moved.
    return True


def step_part(message: Any, step: Event | dict[str, Any]) -> Any:
    """What to dead-letter for one step of a batch: the message itself for a tick, the event's own
    bytes (in the envelope's place) for an event."""
    if not isinstance(step, Event):
        return message
    return Part(message.topic, message.partition, message.offset, message.key, orjson.dumps(step.to_wire()))


class Batch:
    """The behaviour rounds of the records taken at once, a :class:`streams.domain.batches.BatchRounds` per
    partition, finished together: one acknowledged send of all their decisions and interventions, then
    the states recorded (see the module)."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.partitions: dict[int, BatchRounds] = {}
        self.wall = time.time()

    def has(self, user_id: str) -> bool:
        return any(user_id in rounds.users for rounds in self.partitions.values())

    def add(self, message: Any, step: Event | dict[str, Any]) -> None:
        ctx, partition = self.ctx, message.partition
        if isinstance(step, Event):
            if ctx.erased_users.drops(step.user_id, to_millis(step.event_time)):
                log.info("an event from before an erasure arrived after it: not taken in")
                metrics.ERASED_EVENTS_SKIPPED.inc()
                return
            ctx.clocks.observe(partition, step.event_time, self.wall)
        rounds = self.partitions.get(partition)
        if rounds is None:
            rounds = self.partitions[partition] = BatchRounds(
                ctx.users.get,
                ctx.policy,
                ctx.models.of(partition),
                partition=partition,
                session_gap=ctx.settings.session_gap_seconds,
                catalog=ctx.references.catalog,
            )
        rounds.play(step, message)

    async def finish(self) -> None:
        """Send, record and emit what the rounds so far decided; the batch is empty again after."""
        partitions, self.partitions = self.partitions, {}
        if not partitions:
            return
        ctx, settings, wall = self.ctx, self.ctx.settings, self.wall
        self.wall = time.time()
        # From here on a commit writes these users as they were before the batch.
        for rounds in partitions.values():
            for user_id, user in rounds.users.items():
                ctx.state_writes.begin(user_id, user.before)
        outcomes = {partition: rounds.outcomes() for partition, rounds in partitions.items()}
        try:
            for rounds in partitions.values():
                metrics.DUPLICATE_EVENTS.inc(rounds.duplicates)
                for failure in rounds.failures:
                    await ctx.processing_failed(step_part(failure.origin, failure.step), failure.error)
            # Decisions and interventions first, acknowledged by the broker, then the states that record
            # them: killed in between, the worker decides again after the restart and sends the same ids
            # again (at least once); the other way round it would find them decided and never send them.
            records = []
            for played_rounds in outcomes.values():
                for user, played in played_rounds:
                    key = user.state.user_id.encode()
                    for decision in played.done.decisions:
                        records.append((settings.topic_decisions, key, orjson.dumps(decision.to_wire(wall))))
                        if decision.decision == EMITTED:
                            wire = orjson.dumps(decision.intervention.to_wire(wall))
                            records.append((settings.topic_interventions, key, wire))
            if records:
                # Sent until the broker takes them (acks=all): the broker away is no reason to drop a
                # batch; a worker stopping meanwhile raises StopRequested, and its records are read again.
                await send_until_taken(
                    lambda: ctx.acknowledged.send_all(records),
                    f"decisions of {len(records)} records",
                    stopping=lambda: ctx.stopping,
                    sleep=ctx.app.sleep,
                    failed=metrics.ACKNOWLEDGED_SEND_FAILURES.inc,
                )
        except BaseException:  # not known to be delivered: no later write may record these rounds
            for rounds in partitions.values():
                for user_id, before in rounds.restore().items():
                    if before is not None:
                        ctx.users.data[user_id] = before
            ctx.state_writes.end()
            raise
        for rounds in partitions.values():
            for user_id, user in rounds.users.items():
                if user.rounds or user.rebuilt:
                    ctx.users.data[user_id] = user.state
                    ctx.state_writes.changed(user_id)
                    ctx.pending_timers.track(user.state)
        ctx.state_writes.end()
        for partition, played_rounds in outcomes.items():
            await emit(ctx, partition, played_rounds, wall)


async def emit(ctx: WorkerContext, partition: int, outcomes: list[Any], wall: float) -> None:
    """What a batch's rounds tell besides their decisions: metrics, scores, tags and ``crm_sync``."""
    settings = ctx.settings
    learned_any = False
    now = time.time()
    for user, played in outcomes:
        done = played.done
        for decision in done.decisions:
            intervention = decision.intervention
            metrics.DECISIONS.labels(intervention.trigger, decision.decision, decision.reason).inc()
            if decision.decision == EMITTED:
                metrics.INTERVENTIONS.labels(intervention.trigger).inc()
                metrics.INTERVENTION_LATENCY.labels(intervention.trigger).observe(
                    max(0.0, now - intervention.event_time)
                )
        user_id = user.state.user_id
        key = user_id.encode()
        if done.model.publish and done.model.scores is not None:
            await ctx.send(settings.topic_scores, key, orjson.dumps(done.model.scores.to_wire(user_id)))
            metrics.SCORES_PUBLISHED.inc()
        for learned in done.model.learned:
            learned_any = True
            metrics.MODEL_EXAMPLES.labels(learned.model, learned.label).inc()
            metrics.MODEL_LABEL_DELAY.labels(learned.model).observe(learned.delay)
            if learned.drift:
                metrics.MODEL_DRIFTS.labels(learned.model).inc()
        if played.tagged is not None:
            await ctx.send(settings.topic_feedback_tagged, key, orjson.dumps(played.tagged.to_wire(wall)))
            for tag in played.tagged.tags:
                metrics.FEEDBACK_TAGGED.labels(tag).inc()
        if played.sync is not None:
            await ctx.send(settings.topic_crm_sync, key, orjson.dumps(played.sync))
            metrics.CRM_SYNCED.inc()
        if done.event is not None:
            metrics.EVENT_PROCESSING.observe(max(0.0, now - done.event.event_time))
    if learned_any:
        ctx.models.learned(partition)


async def handle_process(ctx: WorkerContext, message: Any, event: Event) -> None:
    """A process input: a device, a repair or order request, CRM attributes, a department's update of a
    ticket or feedback, or an erasure. An update its checks refuse is dead-lettered with their reason."""
    settings = ctx.settings
    wall = time.time()
    user_id = event.user_id
    key = user_id.encode()
    if event.source == ERASURE_REQUESTS:
        state_removed = forget_user(ctx, message.partition, user_id)
        ctx.erased_users.add(user_id, to_millis(wall))
        # Everything the user's earlier events produced is written before the sink learns of the
        # erasure: it waits for the other topics to reach their ends as of then (sinks.erasure).
        await ctx.app.producer.flush()
        await ctx.send(settings.topic_erasures, key, orjson.dumps(erasure_record(event, state_removed, wall)))
        metrics.ERASURES_REQUESTED.inc()
        return
    if ctx.erased_users.drops(user_id, to_millis(event.event_time)):
        log.info("a process input from before an erasure arrived after it: not taken in")
        metrics.ERASED_EVENTS_SKIPPED.inc()
        return
    stored = ctx.users.get(user_id)
    snapshot = StateSnapshot(stored)
    try:
        state = stored or UserState(user_id, partition=message.partition)
        # Only orders wait for the stock topic to be read up to date.
        stock = await ctx.stock_reader.levels() if event.source == ORDER_REQUESTS else None
        done = run_process(state, event, ctx.references, stock)
        sync = crm_sync_record(state, event.event_time) if event.source == CRM_UPDATES else None
        ctx.put_user(message.partition, user_id, state)
        ctx.pending_timers.track(state)  # an order or repair request moves the user's idle deadline
    except InvalidEvent as error:  # refused by the process's checks (an update for an unknown ticket):
        # they run before anything changes, and the state was not put, so there is nothing to undo
        await ctx.dead_letter(step_part(message, event), error.reason, error.detail, wall)
        return
    except Exception as error:  # a bug must not stop the agent: the event is dead-lettered
        before = snapshot.restore()
        if before is not None:  # undo the half-applied process: table and changelog agree
            with contextlib.suppress(Exception):
                ctx.put_user(message.partition, user_id, before)
        await ctx.processing_failed(step_part(message, event), error)
        return
    if done.duplicate:
        metrics.PROCESS_DUPLICATES.labels(event.source).inc()
    if sync is not None:  # the CRM's tier is one of the tags it gets back
        await ctx.send(settings.topic_crm_sync, key, orjson.dumps(sync))
        metrics.CRM_SYNCED.inc()
    if done.ticket is not None:
        await ctx.send(settings.topic_tickets, key, orjson.dumps(done.ticket.to_wire(wall)))
        metrics.TICKETS.labels(done.ticket.dispatch.manual_reason or "assigned").inc()
    if isinstance(done.order, OrderCommand):
        await ctx.send(settings.topic_order_commands, key, orjson.dumps(done.order.to_wire(wall)))
        metrics.ORDERS.labels("accepted").inc()
    elif done.order is not None:
        await ctx.send(settings.topic_order_rejections, key, orjson.dumps(done.order.to_wire(wall)))
        metrics.ORDERS.labels(done.order.reason).inc()
    if done.progress is not None:
        topic = (
            settings.topic_ticket_progress
            if isinstance(done.progress, TicketProgress)
            else settings.topic_feedback_progress
        )
        await ctx.send(topic, key, orjson.dumps(done.progress.to_wire(wall)))
        metrics.DEPARTMENT_UPDATES.labels(event.source, done.progress.status).inc()


def forget_user(ctx: WorkerContext, partition: int, user_id: str) -> bool:
    """Delete the user's state (erased, or idle past the horizon), their timers and their pending
    changelog write; whether there was state to delete."""
    state_removed = ctx.users.get(user_id) is not None
    if state_removed:
        ctx.delete_user(partition, user_id)  # a tombstone in the changelog: recovery forgets the user too
    ctx.state_writes.forget(user_id)  # and no later write brings them back
    ctx.pending_timers.answered(user_id)
    return state_removed


def evict(ctx: WorkerContext, partition: int, user_id: str, stored: UserState, now: float) -> None:
    """The user is idle past the horizon at ``now``: their state deleted, or trimmed to their
    lasting facts (:func:`streams.domain.eviction.evicted`). The trimmed state replaces the old one like a
    round's: in memory now, in the changelog before the next offset commit (which also supersedes
    a write of the old state still pending)."""
    kept = evicted(stored, now)
    if kept is None:
        forget_user(ctx, partition, user_id)
        metrics.USERS_EVICTED.labels("deleted").inc()
        return
    ctx.users.data[user_id] = kept
    ctx.state_writes.changed(user_id)
    ctx.pending_timers.answered(user_id)
    ctx.pending_timers.track(kept)  # its renewal reminders; no idle deadline until it is active again
    metrics.USERS_EVICTED.labels("trimmed").inc()


def learn_correction(ctx: WorkerContext, partition: int, correction: Correction | EmotionCorrection) -> None:
    # A correction replayed after a restore from a checkpoint is skipped, so every partition's
    # tagger and emotion model learn each correction once, in order.
    models = ctx.models.of(partition)
    if isinstance(correction, EmotionCorrection):
        if models.learn_emotion_correction(correction):
            ctx.models.learned(partition)
        return
    if models.tagger.learn_correction(correction):
        ctx.models.learned(partition)
        metrics.FEEDBACK_CORRECTIONS_LEARNED.inc()

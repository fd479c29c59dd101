"""``ingest_campaigns`` and ``forecast_load``: the support-load forecast
(:mod:`streams.processes.support_load`).

``ingest_campaigns`` checks each ``campaigns`` message (a bad one is dead-lettered with its reason) and
sends it on to ``forewarn-contacts``, where ingest sends every support contact, all under one key: the
contacts of every channel and the campaigns are then read in order by one ``forecast_load`` on one
partition, whose event-time clock closes every channel's slots (a campaign published on another
partition could be read after the slots it should have shaped). ``forecast_load`` counts each
contact, and when event time closes a slot it learns it and sends the forecasts, the slot's counts and
the gauges.
"""

from __future__ import annotations

import time

import faust
import orjson

from streams.contracts import metrics
from streams.contracts.events import InvalidEvent
from streams.processes.support_load import (
    LOAD_KEY,
    Campaign,
    ModelsOf,
    Refresh,
    SupportLoad,
    add_campaign,
    add_contact,
    closable_until,
    parse_campaign,
    read_load_record,
    refresh,
)
from streams.worker.context import WorkerContext
from streams.worker.guard import AgentFunction, each_event

STATE_KEY = "load"


def campaigns_agent(ctx: WorkerContext) -> AgentFunction:
    """The ``ingest_campaigns`` agent, for the ``campaigns`` topic."""

    async def ingest_campaigns(stream: faust.StreamT) -> None:
        await each_event(stream, lambda event: forward_campaign(ctx, event), ctx.processing_failed)

    return ingest_campaigns


async def forward_campaign(ctx: WorkerContext, event: faust.EventT) -> None:
    """Check one campaign and send it to the contacts topic."""
    message = event.message
    try:
        campaign = parse_campaign(message.value, max_bytes=ctx.settings.max_event_bytes)
    except InvalidEvent as error:
        await ctx.dead_letter(message, error.reason, error.detail, time.time())
        return
    await ctx.send(ctx.settings.topic_contacts, LOAD_KEY, orjson.dumps(campaign.to_wire()))


def agent(ctx: WorkerContext) -> AgentFunction:
    """The ``forecast_load`` agent, for the contacts topic."""

    async def forecast_load(stream: faust.StreamT) -> None:
        await each_event(stream, lambda event: count_contact(ctx, event), ctx.processing_failed)

    return forecast_load


async def count_contact(ctx: WorkerContext, event: faust.EventT) -> None:
    """Count one contact or file one campaign (a record not as Forewarn writes it is dead-lettered),
    then close the slots event time has passed and send their forecasts."""
    message = event.message
    try:
        record = read_load_record(message.value, ctx.internal_max_bytes)
    except InvalidEvent as error:
        await ctx.dead_letter(message, error.reason, error.detail, time.time())
        return
    tables = ctx.tables
    state = tables.support_load.get(STATE_KEY) or SupportLoad()
    if isinstance(record, Campaign):
        if add_campaign(state, record):
            metrics.CAMPAIGNS.inc()
            tables.support_load[STATE_KEY] = state
        return
    channel, wall = record["channel"], time.time()
    how = add_contact(state, channel, record["event_time"], record["session_id"], record["source"], wall)
    metrics.SUPPORT_CONTACTS.labels(channel, how).inc()
    # Whatever it was, its source's clock moved: slots may close. Only then are the models and the
    # catalog's launches read (most contacts close nothing).
    done = None
    if closable_until(state, wall) is not None:
        models = tables.load_models.get(STATE_KEY) or ModelsOf()
        launches = [product.launched_at for product in ctx.references.catalog.products.values()]
        done = refresh(state, models, wall, launches, ctx.policy.staffing)
    tables.support_load[STATE_KEY] = state
    if done is not None:
        tables.load_models[STATE_KEY] = models
        await send_refresh(ctx, done)


async def send_refresh(ctx: WorkerContext, done: Refresh) -> None:
    """The closed slots' counts, the forecasts and the gauges."""
    closed_at = time.time()
    for actual in done.actuals:
        await ctx.topics.support_load_actuals.send(
            key=actual.channel.encode(), value=actual.to_wire(closed_at)
        )
    for forecast in done.forecasts:
        await ctx.topics.support_load.send(key=forecast.channel.encode(), value=forecast.to_wire())
        metrics.SUPPORT_LOAD_NEXT_HOUR.labels(forecast.channel).set(forecast.next_hour())
        metrics.SUPPORT_LOAD_CAPACITY.labels(forecast.channel).set(forecast.capacity())
    if done.skipped:
        metrics.SUPPORT_LOAD_SLOTS_SKIPPED.inc(done.skipped)

"""``watch_issues``: support questions in (keyed by product category on ``forewarn-questions``), hot
issues out: support topics whose question rate surges on a product (:mod:`models.surge`,
:func:`streams.processes.run.observe_question`). Every product of a category and every earlier launch
(the launch prior) is on one partition, so the FAQ forecasts of the category's launches are made here
too (:func:`streams.processes.run.due_forecasts`, ``launch_faq_forecasts``)."""

from __future__ import annotations

import time

import faust

from streams.contracts import metrics
from streams.contracts.events import InvalidEvent
from streams.contracts.internal import read_question
from streams.processes.run import due_forecasts, observe_question
from streams.worker.context import WorkerContext
from streams.worker.guard import AgentFunction, each_event


def agent(ctx: WorkerContext) -> AgentFunction:
    """The ``watch_issues`` agent, for the internal questions topic."""

    async def watch_issues(stream: faust.StreamT) -> None:
        await each_event(stream, lambda event: watch_question(ctx, event), ctx.processing_failed)

    return watch_issues


async def watch_question(ctx: WorkerContext, event: faust.EventT) -> None:
    """Count one question (a record not as ingest writes it is dead-lettered), send the hot-issue
    alerts it raises and the category's FAQ forecasts now due."""
    message = event.message
    wall = time.time()
    catalog = ctx.references.catalog
    try:
        question = read_question(message.value, catalog.category_of, ctx.internal_max_bytes)
    except InvalidEvent as error:
        await ctx.dead_letter(message, error.reason, error.detail, wall)
        return
    tables = ctx.tables
    alerts = observe_question(
        question, catalog, tables.issue_counts, tables.launch_profiles, ctx.surge_rules, ctx.faq_rules
    )
    metrics.SUPPORT_QUESTIONS.labels(question["category"]).inc()
    for alert in alerts:
        await ctx.topics.hot_issues.send(key=alert.product_id.encode(), value=alert.to_wire(wall))
        metrics.HOT_ISSUES.labels(alert.category).inc()
    now = question["event_time"] / 1000.0
    for made in due_forecasts(
        question["category"], now, catalog, tables.launch_profiles, ctx.faq_made, ctx.faq_rules
    ):
        await ctx.topics.launch_faq_forecasts.send(key=made.product_id.encode(), value=made.to_wire(wall))
        metrics.LAUNCH_FAQ_FORECASTS.labels(made.category).inc()

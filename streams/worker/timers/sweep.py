"""``sweep``: users whose timers fell due while they were silent get a tick on their own partition.

Dwell on the payment page, renewals, activity declines and the end of quiet hours fire when a user
sends nothing more; users idle past the horizon are evicted the same way. The tick goes through
``track_users``, the only writer of user state. The sweep looks only at users with a pending timer
(:class:`streams.domain.triggers.PendingTimers`, kept by ``track_users`` and rebuilt from the table
after each rebalance), never at the whole table, and holds a partition's clock while its records wait
to be read (:meth:`streams.worker.read_progress.ReadProgress.catching_up`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from streams.contracts import metrics
from streams.contracts.time import to_millis
from streams.worker.context import WorkerContext

log = logging.getLogger(__name__)


def timer(ctx: WorkerContext) -> Callable[[], Awaitable[None]]:
    """The ``sweep`` timer (every ``sweep_interval_seconds``)."""

    async def sweep() -> None:
        try:
            await sweep_once(ctx)
        except Exception:  # an exception in a Faust timer crashes the app; the next sweep retries
            log.exception("timer sweep failed")

    return sweep


async def sweep_once(ctx: WorkerContext) -> None:
    """Send a tick to every user of this worker's active partitions whose timer is due."""
    wall = time.time()
    active = ctx.active_partitions()
    behind = await ctx.progress.catching_up(
        ctx.app.consumer, active, set(ctx.source_of), ctx.settings.topic_events, ctx.in_flight
    )
    for user_id, partition, now in ctx.pending_timers.due(ctx.clocks, active, wall, catching_up=behind):
        await ctx.topics.ticks.send(
            key=user_id.encode(), value={"user_id": user_id, "now": to_millis(now)}, partition=partition
        )
        metrics.TICKS_SENT.inc()

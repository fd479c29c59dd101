"""``report_partitions``: lag, the partitions held and the models' quality, for the partitions this
worker holds now. What a rebalance took away is removed, so that sums over workers count each
partition once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from streams.contracts import metrics
from streams.worker.context import WorkerContext

INTERVAL_SECONDS = 5.0


def timer(ctx: WorkerContext) -> Callable[[], Awaitable[None]]:
    """The ``report_partitions`` timer (every :data:`INTERVAL_SECONDS`)."""

    async def report_partitions() -> None:
        report(ctx)

    return report_partitions


def report(ctx: WorkerContext) -> None:
    """Set the lag, assigned-partition and model-quality series of this worker."""
    app = ctx.app
    read_offsets = app.monitor.tp_read_offsets
    lags = {}
    for tp in app.consumer.assignment():
        highwater = app.consumer.highwater(tp)
        read = read_offsets.get(tp)
        if highwater is not None and read is not None:
            lags[(tp.topic, tp.partition)] = max(0, highwater - read - 1)
    metrics.report_lag(ctx.settings.app_id, lags)
    actives = app.assignor.assigned_actives()
    held = {(tp.topic, str(tp.partition), "active"): 1 for tp in actives}
    held |= {(tp.topic, str(tp.partition), "standby"): 1 for tp in app.assignor.assigned_standbys()}
    metrics.replace_series(metrics.ASSIGNED_PARTITIONS, "worker", held)
    served = {str(tp.partition) for tp in actives if tp.topic == ctx.settings.topic_events}
    metrics.replace_series(metrics.MODEL_QUALITY, "worker", ctx.models.quality_of(served))

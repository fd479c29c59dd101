"""Model checkpoints and users' state written out: every ``model_checkpoint_seconds``, when
partitions are revoked (before another worker recovers them) and at shutdown
(:mod:`streams.worker.live_models`, :mod:`streams.worker.statewrites`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from streams.worker.context import WorkerContext


def timer(ctx: WorkerContext) -> Callable[[], Awaitable[None]]:
    """The ``checkpoint_periodically`` timer."""

    async def checkpoint_periodically() -> None:
        ctx.checkpoint_models(list(ctx.models.live))

    return checkpoint_periodically


def on_partitions_revoked(ctx: WorkerContext) -> Callable[..., Awaitable[None]]:
    """The handler of ``app.on_partitions_revoked``: flushed here, ahead of the rebalance going on."""

    async def checkpoint_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        ctx.checkpoint_models({tp.partition for tp in revoked if tp.topic == ctx.settings.topic_events})
        ctx.progress.forget(revoked)
        ctx.write_changed_states()
        await ctx.app.producer.flush()

    return checkpoint_revoked


def on_before_shutdown(ctx: WorkerContext) -> Callable[..., Awaitable[None]]:
    """The handler of ``app.on_before_shutdown`` (the app flushes its producer next)."""

    async def checkpoint_at_shutdown(sender: Any, **kwargs: Any) -> None:
        ctx.checkpoint_models(list(ctx.models.live))
        ctx.write_changed_states()

    return checkpoint_at_shutdown

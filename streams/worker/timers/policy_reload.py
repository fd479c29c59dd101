"""Policy reload without a restart (:mod:`streams.domain.policy_reload`): the ``reload_policy`` timer
reads ``FOREWARN_POLICY_FILE`` again every ``FOREWARN_POLICY_RELOAD_SECONDS``, and SIGHUP reloads at
once (its handler is installed when the worker is ready). A new policy is in force from the next batch
of rounds on, in every agent: a batch takes ``ctx.policy`` when it starts a partition's rounds."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from streams.worker.context import WorkerContext

log = logging.getLogger(__name__)


def timer(ctx: WorkerContext) -> Callable[[], Awaitable[None]]:
    """The ``reload_policy`` timer: the file read again, put in force if it changed and passes its checks."""

    async def reload_policy() -> None:
        ctx.policy_reloader.reload()

    return reload_policy


def on_sighup(ctx: WorkerContext) -> Callable[[], Awaitable[None]]:
    """The task, run once the worker is ready, that makes SIGHUP reload the policy file."""

    def reload_now() -> None:
        log.info("SIGHUP: reading the policy file again")
        ctx.policy_reloader.reload(force=True)

    async def install_sighup_handler() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_now)

    return install_sighup_handler

"""How the long-running tools (``forewarn traffic``, ``forewarn notifier``) stop: SIGTERM and SIGINT
set an :class:`asyncio.Event` their loops watch, so that they finish what they are sending and exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def stopped_by_signals(stop: asyncio.Event) -> Iterator[None]:
    """While inside: SIGTERM and SIGINT set ``stop`` (in the running event loop)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        yield
    finally:
        for number in signals:
            loop.remove_signal_handler(number)

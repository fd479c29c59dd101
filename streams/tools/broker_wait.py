"""How the long-running tools (``forewarn traffic``, ``forewarn notifier``) wait for the broker: until
it answers and has the topics they use (``forewarn topics`` creates them), or until they are stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.contracts.settings import Settings

log = logging.getLogger(__name__)


async def _missing_topics(settings: Settings, topics: Collection[str]) -> list[str]:
    """Those of ``topics`` the broker does not have; raises KafkaError or OSError if it does not answer."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=10_000,
        **settings.aiokafka_security(),
    )
    try:
        await admin.start()
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return sorted(set(topics) - existing)


async def wait_for_topics(
    settings: Settings,
    topics: Collection[str],
    stop: asyncio.Event,
    first_delay: float = 1.0,
    max_delay: float = 30.0,
) -> bool:
    """Wait until the broker answers and has every one of ``topics``, retrying with a delay that doubles
    up to ``max_delay``. True when they are there; False if ``stop`` was set first."""
    delay = first_delay
    while not stop.is_set():
        try:
            missing = await _missing_topics(settings, topics)
        except (KafkaError, OSError) as error:
            log.warning(
                "the broker %s does not answer (%s); retrying in %.0f s", settings.broker_url, error, delay
            )
        else:
            if not missing:
                return True
            log.warning(
                "topics %s do not exist yet (`forewarn topics` creates them); retrying in %.0f s",
                ", ".join(missing),
                delay,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, max_delay)
    return False

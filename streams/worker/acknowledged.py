"""A producer for the records a round must see acknowledged before it records them in the user's state.

``track_users`` sends a round's decisions and interventions and waits for the broker's acknowledgement
before it writes the state that marks them decided (:mod:`streams.worker.app`): a worker killed in between
decides again after its restart and sends the same ids again, never the other way round. Faust's own
producer gathers messages for ``FOREWARN_PRODUCER_LINGER_MS`` before it sends them, which is right for
the bulk (re-keyed events, changelog records) and wrong for a record the agent is waiting on: every
deciding round would stand still for the linger. So these records go through a producer of their own
that sends at once (``linger_ms=0``, ``acks=all``), which also takes the linger off the interventions'
latency. Its partitioner is aiokafka's default, the one Faust's producer uses: a user's records land on
the partition they always did.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mode
from aiokafka import AIOKafkaProducer

from streams.contracts.settings import Settings


class AcknowledgedSender(mode.Service):
    """Sends records at once and returns when the broker has acknowledged every one of them."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        # The app starts its services after the first recovery, while its agents may already be taking
        # events: a send before this is set waits for it instead of failing the round.
        self._producer_started = asyncio.Event()

    async def on_start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            acks="all",
            linger_ms=0,
            **self.settings.aiokafka_security(),
        )
        await producer.start()
        self._producer = producer
        self._producer_started.set()

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()  # sends what it holds first

    async def send_all(self, records: list[tuple[str, bytes, bytes]]) -> None:
        """Send ``(topic, key, value)`` records, in order; raises if any was not acknowledged. Before the
        sender has started, waits for it."""
        producer = await self._running()
        sends = [await producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*sends)

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Send one record with ``headers``; raises if it was not acknowledged. Before the sender has
        started, waits for it."""
        producer = await self._running()
        await producer.send_and_wait(topic, value, key=key, headers=headers)

    async def _running(self) -> AIOKafkaProducer:
        await self._producer_started.wait()
        assert self._producer is not None  # set before _started
        return self._producer

"""Stock levels for checking orders, read from the ``stock`` topic when the stock system has one.

Every worker needs every SKU's level (a user's order may name any SKU), so this is not a partitioned
table: each worker reads the whole topic itself, with a plain consumer outside any group, from the
beginning, and keeps the latest level per SKU (:class:`streams.processes.orders.StockLevels`). The topic is
looked for at start and every ``poll_seconds`` after: orders are checked against stock from the
moment it exists (``FOREWARN_TOPIC_STOCK``), never against a half-read topic. Until the reader has
caught up with the topic's end as it found it, :meth:`StockReader.levels` waits, so a worker that just
started does not accept an order its stock would refuse.

A stock message that cannot be read is dead-lettered by the caller (``on_invalid``) and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.contracts.events import InvalidEvent
from streams.contracts.settings import Settings
from streams.processes.orders import StockLevels, parse_stock

log = logging.getLogger(__name__)

# How long to wait before trying again when the broker does not answer.
RETRY_SECONDS = 1.0


class StockReader(mode.Service):
    """Keeps :class:`StockLevels` from the stock topic; ``levels()`` is None while there is no topic."""

    def __init__(
        self,
        settings: Settings,
        on_invalid: Callable[[Any, InvalidEvent], Awaitable[None]],
        poll_seconds: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.on_invalid = on_invalid
        self.poll_seconds = poll_seconds
        self.stock = StockLevels()
        self.present = False
        self._caught_up = asyncio.Event()

    async def levels(self) -> StockLevels | None:
        """The stock levels once read up to date, or None when there is no stock topic."""
        if not self.present:
            return None
        await self._caught_up.wait()
        return self.stock

    @mode.Service.task
    async def _read(self) -> None:
        settings = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            **settings.aiokafka_security(),
        )
        await consumer.start()
        loop = asyncio.get_running_loop()
        partitions: set[int] = set()
        end_marks: dict[TopicPartition, int] = {}  # where "caught up" is, as found when assigned
        next_look = 0.0
        try:
            while not self.should_stop:
                try:
                    if loop.time() >= next_look:
                        next_look = loop.time() + self.poll_seconds
                        found = await self._partitions(consumer)
                        if found - partitions:
                            new = [
                                TopicPartition(settings.topic_stock, p) for p in sorted(found - partitions)
                            ]
                            consumer.assign([TopicPartition(settings.topic_stock, p) for p in sorted(found)])
                            await consumer.seek_to_beginning(*new)
                            end_marks.update(await consumer.end_offsets(new))
                            partitions = found  # only now: a failure above is retried whole
                            self.present = True
                    if not partitions:
                        await self.sleep(max(0.0, next_look - loop.time()))
                        continue
                    batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                    for messages in batches.values():
                        for message in messages:
                            try:
                                self.stock.apply(parse_stock(message.value))
                            except InvalidEvent as error:
                                await self.on_invalid(message, error)
                    if not self._caught_up.is_set() and await self._reached(consumer, end_marks):
                        self._caught_up.set()
                        log.info("stock levels read for %d SKUs", len(self.stock.levels))
                except KafkaError as error:
                    # The broker out of reach (a network partition, a restart): the consumer
                    # reconnects by itself, and the worker must ride it out, not stop.
                    log.warning(
                        "stock: the broker did not answer (%s); trying again in %.0f s", error, RETRY_SECONDS
                    )
                    next_look = 0.0  # look for the topic again once the broker answers
                    await self.sleep(RETRY_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    @staticmethod
    async def _reached(consumer: AIOKafkaConsumer, marks: dict[TopicPartition, int]) -> bool:
        for tp, end in marks.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _partitions(self, consumer: AIOKafkaConsumer) -> set[int]:
        """The stock topic's partitions, from fresh cluster metadata; empty while it does not exist."""
        if self.settings.topic_stock not in await consumer.topics():
            return set()
        return set(consumer.partitions_for_topic(self.settings.topic_stock) or ())

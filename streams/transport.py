"""Faust's Kafka transport, with the consumer's fetch wait taken from the settings.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting to change it. Apache
Kafka answers a fetch as soon as data arrives, so there the value only paces an idle consumer; the
embedded Tansu broker holds every fetch for a share of that wait however much data flows, which adds
about 0.4 s at the median to each hop (a bare consumer at 1000 messages/s: 394 ms at 1500 ms, 16 ms
at 50 ms). ``FOREWARN_BROKER_FETCH_MAX_WAIT`` chooses it; the embedded runs use 0.1 s, the best
latency the benchmark found (much shorter waits fetch so little at a time that the worker's per-fetch
costs grow).
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when the consumer starts (it builds its fetcher then); Faust offers no
        # other way to set it.
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer

    def __init__(self, url: Any, app: Any, *, fetch_max_wait_ms: int) -> None:
        super().__init__(url, app)
        self.fetch_max_wait_ms = fetch_max_wait_ms


def use_fetch_max_wait(app: Any, milliseconds: int) -> None:
    """Make ``app`` consume with fetches that wait at most ``milliseconds`` for data. Call it before
    the app's first topic: that is when Faust makes its transport."""
    app.transport = Transport(app.conf.broker_consumer, app, fetch_max_wait_ms=milliseconds)

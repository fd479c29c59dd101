"""The Kafka clients of the example departments (the notifier, the simulated service desk and teams):
they consume Forewarn's output topics in a consumer group of their own and answer on source topics.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.contracts.settings import Settings


def example_clients(
    bootstrap: str | list[str], settings: Settings, group: str, *topics: str
) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
    """A consumer of ``topics`` in the group ``<app id>-<group>``, from the earliest offset, with the
    workers' group timeouts (``FOREWARN_BROKER_*_TIMEOUT``, ``FOREWARN_BROKER_HEARTBEAT_INTERVAL``) and
    fetch wait, and a producer that waits for every replica (``acks="all"``); both with the settings'
    security. Neither is started."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"{settings.app_id}-{group}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **settings.aiokafka_group_timeouts(),
        **settings.aiokafka_security(),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **settings.aiokafka_security())
    return consumer, producer

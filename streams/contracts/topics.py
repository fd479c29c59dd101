"""The topics of the registry (:mod:`streams.contracts.registry`) as they are in a deployment: their
names in the settings, the ones to create, the partition counts they need, and the topics table of
the docs. Creates them, before a worker joins (:func:`ensure_topics`).

The internal topics must have the same partition count as the tables co-partitioned with them (the
per-user table, the hot-issue tables); a mismatch is reported in plain words rather than left to
corrupt state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.contracts.registry import SOURCE, TOPICS, Topic
from streams.contracts.settings import EMBEDDED_BROKER_SETTINGS, PREFIX, Settings, names_set

log = logging.getLogger(__name__)


def topic_names(settings: Settings) -> list[str]:
    """Every topic Forewarn creates (:func:`ensure_topics`) and needs, in the registry's order: all it
    reads or writes except ``stock``, which orders are checked against only where the stock system
    created it.

    >>> topic_names(Settings.from_env({"FOREWARN_TOPIC_CLICKSTREAM": "web"}))[:2]
    ['web', 'logistics']
    """
    return [topic.name_in(settings) for topic in TOPICS.values() if topic.created]


def source_topic_names(settings: Settings) -> list[str]:
    """The source topics Forewarn creates: what producers write and the workers read (``stock`` aside).

    >>> source_topic_names(Settings.from_env({}))[-3:]
    ['ticket_updates', 'feedback_updates', 'campaigns']
    """
    return [topic.name_in(settings) for topic in TOPICS.values() if topic.role == SOURCE and topic.created]


def copartitioned_topics(settings: Settings) -> dict[str, str]:
    """The internal topics that must have exactly ``FOREWARN_PARTITIONS`` partitions, each with the
    tables co-partitioned with it: a table's partition N holds the keys of the topic's partition N.

    >>> sorted(copartitioned_topics(Settings.from_env({})).items())[0]
    ('forewarn-contacts', 'the support-load tables')
    """
    return {topic.name_in(settings): topic.copartitioned for topic in TOPICS.values() if topic.copartitioned}


def partition_mismatch(settings: Settings, name: str, partitions: int | None) -> str | None:
    """What is wrong, in words, when the co-partitioned topic ``name`` has ``partitions``; else None.

    >>> settings = Settings.from_env({"FOREWARN_PARTITIONS": "8", "FOREWARN_TOPIC_EVENTS": "events"})
    >>> partition_mismatch(settings, "events", 8) is None
    True
    >>> partition_mismatch(settings, "events", 4)
    'events has 4 partitions, FOREWARN_PARTITIONS is 8: the user table must be co-partitioned with it'
    """
    tables = copartitioned_topics(settings).get(name)
    if tables is None or partitions == settings.partitions:
        return None
    return (
        f"{name} has {partitions} partitions, FOREWARN_PARTITIONS is {settings.partitions}:"
        f" {tables} must be co-partitioned with it"
    )


def _partitions(topic: Topic) -> str:
    if not topic.created:
        return "not created" + (" (compacted)" if topic.compacted else "")
    if topic.copartitioned:
        return f"exactly `{PREFIX}PARTITIONS` ({topic.copartitioned})"
    return f"`{PREFIX}PARTITIONS`"


def _code(names: tuple[str, ...], none: str) -> str:
    return ", ".join(f"`{name}`" for name in names) or none


def topics_table() -> str:
    """The topics table of the docs, in Markdown: every topic of the registry with its setting,
    role, source, key, partitions, the code that writes and reads its records and the ClickHouse
    table it is stored in.

    >>> topics_table().splitlines()[2].split(" | ")[:4]
    ['| `clickstream`', '`FOREWARN_TOPIC_CLICKSTREAM`', 'source', '`clickstream`']
    """
    lines = [
        "| topic | variable | role | source | key | partitions | written by | read by | stored in | what |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for topic in TOPICS.values():
        source = f"`{topic.source}`" if topic.source else ""
        cells = [
            f"`{topic.default}`",
            f"`{PREFIX}{topic.setting.upper()}`",
            topic.role,
            source,
            topic.key,
            _partitions(topic),
            _code(topic.writes, "producers"),
            _code(topic.reads, "outside Forewarn"),
            f"`{topic.table}`" if topic.table else "",
            topic.description,
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


async def broker_cluster_id(settings: Settings) -> str | None:
    """The cluster id the broker reports (None if it reports none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **settings.aiokafka_security())
    await admin.start()
    try:
        return (await admin.describe_cluster()).get("cluster_id")
    finally:
        await admin.close()


async def for_the_broker(settings: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """``settings`` (read from ``environ``, the process's by default) for the broker they name
    (:meth:`Settings.for_broker`): with ``FOREWARN_BROKER_PROFILE=auto`` the broker is asked its cluster
    id. Says what it changed in the log. Raises aiokafka's KafkaConnectionError if the broker does not
    answer, ValueError if what was set does not fit with the embedded broker's values."""
    cluster_id = await broker_cluster_id(settings) if settings.broker_profile == "auto" else None
    tuned = settings.for_broker(cluster_id, names_set(os.environ if environ is None else environ))
    if tuned != settings:
        chosen = ", ".join(
            f"{PREFIX}{name.upper()}={getattr(tuned, name)}"
            for name in EMBEDDED_BROKER_SETTINGS
            if getattr(tuned, name) != getattr(settings, name)
        )
        found = f"cluster id {cluster_id}" if cluster_id else f"{PREFIX}BROKER_PROFILE=embedded"
        log.info("the embedded Tansu broker (%s): %s", found, chosen)
    return tuned


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create missing topics; returns every topic's partition count. Raises on co-partitioning errors."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **settings.aiokafka_security())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topic_names(settings) if name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(name, settings.partitions, settings.replication_factor) for name in missing]
            )
            log.info("created topics %s with %d partitions", missing, settings.partitions)
        described = await admin.describe_topics(topic_names(settings))
        counts = {topic["topic"]: len(topic["partitions"]) for topic in described}
    finally:
        await admin.close()
    problems = [
        problem
        for name in copartitioned_topics(settings)
        if (problem := partition_mismatch(settings, name, counts.get(name)))
    ]
    if problems:
        raise RuntimeError("; ".join(problems))
    return counts

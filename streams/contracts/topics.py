"""Create the topics Forewarn uses, with their partition counts, before the worker joins.

The internal events and ticks topics must have the same partition count as the per-user table
(co-partitioning); a mismatch is reported in plain words rather than left to corrupt state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.contracts.settings import EMBEDDED_BROKER_SETTINGS, PREFIX, Settings, names_set

log = logging.getLogger(__name__)


def topic_names(settings: Settings) -> list[str]:
    """Every topic Forewarn reads or writes, except ``stock``: orders are checked against stock only
    where the stock system created that topic."""
    return [
        *settings.source_topics.values(),
        settings.topic_feedback_labels,
        settings.topic_events,
        settings.topic_ticks,
        settings.topic_labels,
        settings.topic_questions,
        settings.topic_interventions,
        settings.topic_decisions,
        settings.topic_scores,
        settings.topic_tickets,
        settings.topic_order_commands,
        settings.topic_order_rejections,
        settings.topic_feedback_tagged,
        settings.topic_hot_issues,
        settings.topic_crm_sync,
        settings.topic_erasures,
        settings.topic_api_audit,
        settings.topic_dead_letters,
    ]


def copartitioned_topics(settings: Settings) -> dict[str, str]:
    """The internal topics that must have exactly ``FOREWARN_PARTITIONS`` partitions, each with the
    tables co-partitioned with it: a table's partition N holds the keys of the topic's partition N.

    >>> sorted(copartitioned_topics(Settings.from_env({})).items())[0]
    ('forewarn-events', 'the user table')
    """
    return {
        settings.topic_events: "the user table",
        settings.topic_ticks: "the user table",
        settings.topic_labels: "the user table",
        settings.topic_questions: "the hot-issue tables",
    }


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

"""The worker's topics and tables, declared in one place.

Source and internal topics are read as raw bytes and every record is checked by the agent that reads
it (:mod:`streams.contracts.events`, :mod:`streams.contracts.internal`): a value Faust could not decode
would be thrown into the agent, and what decodes need not have the shape the agent reads.

Tables are keyed by JSON, their values by a named codec (:mod:`streams.worker.codec`), and backed by a
changelog topic; a changelog record that does not decode is left out at recovery and dead-lettered
(:class:`streams.worker.codec.CheckedTable`).
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.contracts.settings import Settings
from streams.worker.codec import CheckedTable

# Memory of each table partition's RocksDB (with FOREWARN_STORE=rocksdb://): Faust's defaults (64 MiB
# memtables, three of them, and a 2 GiB block cache, per table partition) would hold hundreds of
# thousands of users' state in memory before any of it went to disk. With these a table partition
# holds at most two 4 MiB memtables and an 8 MiB cache of what was read from disk.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 1024**2,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024**2,
}


@dataclass(frozen=True)
class Topics:
    """The topics the agents read and the internal ones they write."""

    sources: faust.TopicT  # every source topic (settings.source_topics), raw
    feedback_labels: faust.TopicT  # people's corrections of feedback tags, raw
    user_input: faust.TopicT  # forewarn-events (envelopes), forewarn-ticks and forewarn-labels, raw
    ticks: faust.TopicT  # timer ticks, keyed by user, on the user's partition
    labels: faust.TopicT  # each correction, sent to every partition
    questions: faust.TopicT  # support questions keyed by product category, raw
    hot_issues: faust.TopicT  # alerts of support topics surging on a product
    launch_faq_forecasts: faust.TopicT  # FAQ forecasts of launches, made where the questions are counted
    campaigns: faust.TopicT  # campaigns (the load forecast's calendar), raw
    contacts: faust.TopicT  # support contacts and campaigns under one key, raw
    support_load: faust.TopicT  # the load forecasts
    support_load_actuals: faust.TopicT  # the contacts of each closed slot

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> Topics:
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        return cls(
            sources=app.topic(*dict.fromkeys(settings.source_topics.values()), **raw),
            feedback_labels=app.topic(settings.topic_feedback_labels, **raw),
            user_input=app.topic(
                settings.topic_events, settings.topic_ticks, settings.topic_labels, value_serializer="raw"
            ),
            ticks=app.topic(settings.topic_ticks, partitions=settings.partitions),
            labels=app.topic(settings.topic_labels, partitions=settings.partitions),
            questions=app.topic(settings.topic_questions, value_serializer="raw"),
            hot_issues=app.topic(settings.topic_hot_issues),
            launch_faq_forecasts=app.topic(settings.topic_launch_faq_forecasts),
            campaigns=app.topic(settings.topic_campaigns, **raw),
            contacts=app.topic(settings.topic_contacts, value_serializer="raw"),
            support_load=app.topic(settings.topic_support_load),
            support_load_actuals=app.topic(settings.topic_support_load_actuals),
        )


@dataclass(frozen=True)
class Tables:
    """The changelog-backed tables.

    * ``users``: each user's state (:class:`streams.domain.state.UserState`), written by ``track_users``
      only, sent to the changelog once per commit (:mod:`streams.worker.statewrites`).
    * ``models``: the intent and churn models and the tagger of each partition of the events topic,
      keyed by partition number, so that a worker taking over a partition takes over its models;
      checkpointed, signed with the cluster secret (:mod:`streams.worker.live_models`).
    * ``issue_counts`` and ``launch_profiles``: hot-issue detection's counts per product and launch
      profiles per launched product (:mod:`models.surge`), not per category: a category's whole state
      would be one changelog record of megabytes, rewritten on every question.
    * ``support_load`` and ``load_models``: the support-load forecast's counts (open slots, chat
      sessions, campaigns; written on every contact) and its forecasters (written when slots close),
      under the contacts topic's one key (:mod:`streams.processes.support_load`).
    """

    users: CheckedTable
    models: CheckedTable
    issue_counts: CheckedTable
    launch_profiles: CheckedTable
    support_load: CheckedTable
    load_models: CheckedTable

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> Tables:
        def table(name: str, value_codec: str) -> CheckedTable:
            return changelogged_table(app, settings, name, value_codec)

        return cls(
            users=table("users", "user_state"),
            models=table("models", "partition_models"),
            issue_counts=table("issue-counts", "product_issues"),
            launch_profiles=table("launch-profiles", "launch_profile"),
            support_load=table("support-load", "support_load"),
            load_models=table("load-models", "load_models"),
        )

    def all(self) -> tuple[CheckedTable, ...]:
        return (
            self.users,
            self.models,
            self.issue_counts,
            self.launch_profiles,
            self.support_load,
            self.load_models,
        )


def changelogged_table(app: faust.App, settings: Settings, name: str, value_codec: str) -> CheckedTable:
    """A table keyed by JSON, its values by ``value_codec``. Built as ``app.Table`` does, but with the
    serializers set before the table is added: Faust derives a table's serializers from
    key_type/value_type (ignoring a Schema) and makes the changelog topic when the table is added.
    Values recovered from the changelog then decode into the same objects as live writes."""
    table = CheckedTable(
        app,
        name=name,
        partitions=settings.partitions,
        beacon=app.tables.beacon,
        options=dict(ROCKSDB_OPTIONS),  # read by the RocksDB store only
    )
    table.key_serializer = "table_key"
    table.value_serializer = value_codec
    app.tables.add(table)
    return table

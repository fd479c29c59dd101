"""The topic registry (streams.contracts.registry) is the one list of topics, and it says true things
about the code: its sources, its contracts, its tables, the API's topics."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import fields

import pytest

from sinks.rows import TABLE_SPECS, sink_specs
from streams.api.server import ROUTES, command
from streams.contracts import events
from streams.contracts.registry import INTERNAL, ROLES, SOURCE, SOURCE_TOPICS, TOPICS
from streams.contracts.settings import SETTINGS_DOC, Settings
from streams.contracts.topics import copartitioned_topics, source_topic_names, topic_names, topics_table


def resolve(dotted: str) -> object:
    """The module, function, class or method a dotted name names (ImportError/AttributeError if none)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise ImportError(dotted)


def test_every_topic_is_a_setting_with_its_default_and_description() -> None:
    topic_settings = [name for name in SETTINGS_DOC if name.startswith("topic_")]
    assert topic_settings == [topic.setting for topic in TOPICS.values()]
    assert [spec.name for spec in fields(Settings) if spec.name.startswith("topic_")] == topic_settings
    settings = Settings.from_env({"FOREWARN_TOPIC_ORDER_COMMANDS": "orders-out"})
    for topic in TOPICS.values():
        assert SETTINGS_DOC[topic.setting] == (topic.default, topic.description)
        expected = "orders-out" if topic.name == "order_commands" else topic.default
        assert topic.name_in(settings) == expected


def test_every_source_of_events_has_one_topic_and_its_constant_is_named_as_the_setting() -> None:
    assert set(SOURCE_TOPICS) == set(events.FIELDS_BY_SOURCE) == {*events.SOURCES, *events.PROCESS_SOURCES}
    assert len(SOURCE_TOPICS) == sum(1 for topic in TOPICS.values() if topic.source)
    for source, topic in SOURCE_TOPICS.items():
        assert topic.role == SOURCE
        assert getattr(events, topic.name.upper()) == source, topic.name
    assert Settings.from_env({}).source_topics == {
        source: topic.default for source, topic in SOURCE_TOPICS.items()
    }


def test_roles_partitions_and_keys_are_stated() -> None:
    for topic in TOPICS.values():
        assert topic.role in ROLES and topic.key and topic.description, topic.name
        assert topic.reads or topic.role != INTERNAL, topic.name
        assert topic.writes or topic.role == SOURCE, topic.name  # only sources come from outside
        assert topic.created or topic.role == SOURCE, topic.name
    settings = Settings.from_env({})
    assert list(copartitioned_topics(settings)) == [
        "forewarn-events",
        "forewarn-ticks",
        "forewarn-labels",
        "forewarn-questions",
        "forewarn-contacts",
    ]
    assert "stock" not in topic_names(settings)
    assert set(source_topic_names(settings)) == {
        *settings.source_topics.values(),
        "feedback_labels",
        "campaigns",
    }


@pytest.mark.parametrize(
    "dotted", sorted({name for topic in TOPICS.values() for name in (*topic.writes, *topic.reads)})
)
def test_the_code_named_as_writing_or_reading_a_topic_exists(dotted: str) -> None:
    found = resolve(dotted)
    assert callable(found) or inspect.ismodule(found), dotted


def test_the_sink_stores_each_topic_with_a_table_in_that_table() -> None:
    settings = Settings.from_env({})
    stored = {topic.default: topic.table for topic in TOPICS.values() if topic.table}
    assert {topic: spec.table for topic, spec in sink_specs(settings).items()} == stored
    assert set(TABLE_SPECS) == set(stored.values())  # every table of the sink has its topic


def test_the_api_writes_the_source_topics_the_registry_says_it_does() -> None:
    written = {topic.source for topic in TOPICS.values() if "streams.api.server.command" in topic.writes}
    assert written == {route.source for route in ROUTES if route.source}
    assert resolve("streams.api.server.command") is command


def test_the_topics_table_has_a_row_per_topic() -> None:
    rows = topics_table().splitlines()[2:]
    assert len(rows) == len(TOPICS)
    for row, topic in zip(rows, TOPICS.values(), strict=True):
        assert row.startswith(f"| `{topic.default}` | `FOREWARN_{topic.setting.upper()}` | {topic.role} |")

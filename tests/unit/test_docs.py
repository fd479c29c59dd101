"""The documents in docs/ say what the code does: their tables must not drift from the code, and README.md
stays the map (no figures, no tables of the code's)."""

from __future__ import annotations

import ast
import re

from prometheus_client.metrics import MetricWrapperBase

from streams.contracts import metrics
from streams.contracts.events import DEAD_LETTER_REASONS, FIELDS_BY_SOURCE
from streams.contracts.settings import Settings, settings_table
from streams.contracts.topics import topic_names, topics_table
from streams.domain.contact import SUPPRESSION_REASONS
from tests.support import ROOT

DOCS = ROOT / "docs"


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of its level or higher."""
    level = len(heading) - len(heading.lstrip("#"))
    _, found, rest = text.partition(heading + "\n")
    assert found, f"no {heading!r}"
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def table_rows(text: str) -> dict[str, list[str]]:
    """A Markdown table's rows by their first cell's code span: ``| `name` | a | b |`` -> {name: [a, b]}."""
    rows = {}
    for line in text.splitlines():
        found = re.match(r"\| `([^`]+)` \|(.*)\|$", line)
        if found:
            rows[found[1]] = [cell.strip() for cell in found[2].split("|")]
    return rows


README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_settings_table_matches_the_code() -> None:
    pattern = r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->"
    documented = re.search(pattern, read("operations.md"), re.S)
    assert documented is not None
    assert documented.group(1) == settings_table(), "paste `forewarn config` into docs/operations.md"


def test_every_event_type_and_dead_letter_reason_is_documented() -> None:
    contracts = read("contracts.md")
    for fields in FIELDS_BY_SOURCE.values():
        for event_type in fields:
            assert f"| `{event_type}` |" in contracts, event_type
    dead_letters = section(contracts, "### `dead_letters`")
    for reason in DEAD_LETTER_REASONS:
        assert f"`{reason}`" in dead_letters, reason
    policy = read("policy.md")
    for reason in SUPPRESSION_REASONS:
        assert f"`{reason}`" in policy, reason


def test_the_metrics_table_lists_every_metric_with_its_labels() -> None:
    exported = {
        metric._name + ("_total" if metric._type == "counter" else ""): [
            f"`{name}`" for name in metric._labelnames
        ]
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }
    documented = {
        name: [label for label in cells[0].split(", ") if label]
        for name, cells in table_rows(section(read("operations.md"), "## Metrics")).items()
    }
    assert documented == exported


def test_the_topics_table_is_the_registrys() -> None:
    """docs/contracts.md holds the table the topic registry renders, and it lists every topic."""
    text = read("contracts.md")
    start, end = "<!-- topics-table:start -->\n", "<!-- topics-table:end -->"
    assert text[text.index(start) + len(start) : text.index(end)].strip() == topics_table().strip()
    settings = Settings.from_env({})
    documented = table_rows(section(text, "## Topics"))
    assert sorted(documented) == sorted([*topic_names(settings), settings.topic_stock])


def test_every_benchmark_writes_its_figures_into_docs_benchmarks() -> None:
    benchmarks = read("benchmarks.md")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    writers = 0
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["MARKERS"]:
                start, end = ast.literal_eval(node.value)
                target = read("performance.md") if script.name == "pipeline.py" else benchmarks
                assert target.count(start) == 1 and target.count(end) == 1, script.name
                assert start not in readme, script.name
                writers += 1
    assert writers >= 7
    assert "<!--" not in readme  # the README holds no generated block


def test_the_readme_gives_the_two_commands_and_ci_runs_its_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```sh\n(.*?)\n```", section(readme, "## Two commands"), re.S)
    assert commands == [
        "pip install -e '.[embedded]' && forewarn demo --duration 60",
        "pip install -e '.[test]' && python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert [line.replace(" -q", "") for line in ci if "pytest" in line] == commands[1:]  # pip, quietly

"""Operating Forewarn: the Prometheus configuration and alerting rules (deploy/prometheus), the Grafana
dashboards and their provisioning (deploy/grafana), and the metrics they read (streams/contracts/metrics.py).

Static checks first: the dashboards are what deploy/grafana/build_dashboards.py writes and are valid
Grafana models over the provisioned data sources; every PromQL expression parses; promtool accepts the
configuration and the rules and passes their unit tests (deploy/prometheus/alerts_test.yml); every
ClickHouse panel runs against the schema and says what ``forewarn report`` says.

Then live, against one ``forewarn demo`` scraped every second by a real Prometheus (the Debian package,
see tests/support/debian_tools.py) that also evaluates the alerting rules: the worker's /metrics passes
``promtool check metrics``; the dashboards and rules name only metrics it exports; Prometheus accepts
every expression, and the main panels show data.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from types import ModuleType
from typing import Any

import promql_parser
import pytest
import yaml

from sinks.clickhouse import ClickHouseStore
from sinks.departments import department_report
from sinks.report import HOLDOUT, ArmTotals, ArmValue, arm_value, value_report
from streams.contracts import metrics
from streams.tools.broker import free_port
from tests.support import ROOT
from tests.support.debian_tools import PrometheusTools, ensure_prometheus

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "forewarn.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "forewarn.yml"

# Grafana's variables in the panels' PromQL, replaced the way Grafana would before Prometheus sees them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m"}
# Series Prometheus makes itself rather than scrapes.
PROMETHEUS_SERIES = {"up"}
# The time range the ClickHouse macros are expanded with (it holds the test data).
RANGE_START = datetime(2026, 8, 1, tzinfo=UTC)
RANGE_END = datetime(2027, 1, 1, tzinfo=UTC)


def load_builder() -> ModuleType:
    """deploy/grafana/build_dashboards.py, which is a script, not a package module."""
    path = GRAFANA / "build_dashboards.py"
    spec = importlib.util.spec_from_file_location("build_dashboards", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards: file name -> JSON model."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))
    }


def targets(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(dashboard / panel, target) of every panel target whose data source is of ``kind``."""
    for name, model in dashboards().items():
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == kind:
                    yield f"{name} / {panel['title']} / {target['refId']}", target


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def as_promql(expr: str) -> str:
    """A panel expression with Grafana's variables replaced; a variable left over is an error."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the tests do not replace: {expr}"
    return expr


def promql_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard panel and alerting rule."""
    panels = [(where, as_promql(target["expr"])) for where, target in targets("prometheus")]
    rules = [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    return panels + rules


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def metric_names(expr: str) -> set[str]:
    names = set()
    for selector in selectors(expr):
        name = selector.name or next(
            (m.value for m in selector.matchers.matchers if m.name == "__name__"), None
        )
        assert name, f"a selector without a metric name: {expr}"
        names.add(name)
    return names


def exported_series(metrics_text: str) -> set[str]:
    """Series names a /metrics page can have: its families (``# TYPE``) with their types' suffixes. A
    labelled metric that has no children yet has its HELP and TYPE lines and no sample."""
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            names |= {family + suffix for suffix in suffixes.get(kind, ("",))}
    return names


# --- the dashboards and their provisioning


def test_dashboards_are_what_the_script_writes() -> None:
    builder = load_builder()
    built = builder.dashboards()
    assert sorted(built) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for name, model in built.items():
        committed = (DASHBOARDS / name).read_text(encoding="utf-8")
        assert committed == builder.render(model), (
            f"{name} is stale: run python deploy/grafana/build_dashboards.py"
        )


def test_dashboards_are_grafana_models_over_the_provisioned_datasources() -> None:
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    provisioned = {source["uid"]: source["type"] for source in sources}
    assert set(provisioned.values()) == {"prometheus", "grafana-clickhouse-datasource"}
    models = dashboards()
    assert set(models) == {
        "pipeline.json",
        "proactive.json",
        "models.json",
        "business.json",
        "operations.json",
    }
    assert len({model["uid"] for model in models.values()}) == len(models)
    for name, model in models.items():
        assert model["title"] and model["schemaVersion"] >= 36 and model["panels"], name
        ids = [panel["id"] for panel in model["panels"]]
        assert len(set(ids)) == len(ids), f"{name}: panel ids repeat"
        cells: set[tuple[int, int]] = set()
        for panel in model["panels"]:
            where = f"{name} / {panel['title']}"
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, where
            covered = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not covered & cells, f"{where} overlaps another panel"
            cells |= covered
            if panel["type"] == "row":
                continue
            assert panel["targets"], f"{where} has no query"
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids), where
            for target in [panel, *panel["targets"]]:
                source = target["datasource"]
                assert provisioned.get(source["uid"]) == source["type"], (
                    f"{where}: unknown data source {source}"
                )
            for target in panel["targets"]:
                assert target.get("expr" if target["datasource"]["type"] == "prometheus" else "rawSql"), where


def test_grafana_loads_the_dashboards_from_where_compose_mounts_them() -> None:
    [provider] = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


# --- PromQL: dashboards and alerting rules


def test_every_promql_expression_parses_and_names_a_forewarn_metric() -> None:
    expressions = promql_expressions()
    assert len(expressions) > 40
    jobs = {job["job_name"] for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]}
    for where, expr in expressions:
        try:
            found = selectors(expr)
        except ValueError as error:
            pytest.fail(f"{where}: {expr!r} does not parse: {error}")
        names = metric_names(expr)
        assert names and all(
            name.startswith(("forewarn_", "process_")) or name in PROMETHEUS_SERIES for name in names
        ), f"{where}: {names}"
        for selector in found:
            for matcher in selector.matchers.matchers:
                if matcher.name == "job":
                    assert matcher.value in jobs, f"{where}: job {matcher.value!r} is not scraped"


def test_a_broken_expression_fails_the_parse() -> None:
    """The parse check can fail: a typo'd expression is rejected, a Grafana variable left over is caught."""
    with pytest.raises(ValueError):
        selectors("sum by (topic) (rate(forewarn_events_total[1m])")
    with pytest.raises(AssertionError):
        as_promql("rate(forewarn_events_total[$__interval])")


def test_promtool_accepts_the_configuration_and_the_rules() -> None:
    promtool = ensure_prometheus().promtool
    for command in (["check", "config", str(PROMETHEUS_CONFIG)], ["check", "rules", str(ALERTS)]):
        result = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_alerting_rules_pass_their_unit_tests() -> None:
    """alerts_test.yml: each alert fires on a bad synthetic series after its `for:`, not on a healthy one."""
    result = subprocess.run(
        [ensure_prometheus().promtool, "test", "rules", str(ALERTS_TEST)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROMETHEUS_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERTS_TEST.read_text()))
    assert tested == {rule["alert"] for rule in alert_rules()}, "every alert has a unit test"


def test_every_alert_waits_has_a_severity_and_says_what_to_do() -> None:
    for rule in alert_rules():
        assert rule["alert"].startswith("Forewarn") and rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80, rule["alert"]


# --- the consumer-lag gauge


def lag_series(group: str) -> dict[tuple[str, str], float]:
    [family] = metrics.CONSUMER_LAG.collect()
    return {
        (sample.labels["topic"], sample.labels["partition"]): sample.value
        for sample in family.samples
        if sample.labels["group"] == group
    }


def test_report_lag_removes_the_partitions_a_rebalance_took_away() -> None:
    metrics.report_lag("test-other-group", {("events", 0): 9})
    metrics.report_lag("test-group", {("events", 0): 5, ("events", 1): 3, ("scores", 0): 0})
    assert lag_series("test-group") == {("events", "0"): 5, ("events", "1"): 3, ("scores", "0"): 0}
    # A rebalance: this worker keeps events/1 only, and gets events/2.
    metrics.report_lag("test-group", {("events", 1): 7, ("events", 2): 1})
    assert lag_series("test-group") == {("events", "1"): 7, ("events", "2"): 1}
    assert lag_series("test-other-group") == {("events", "0"): 9}, "another group's series stay"
    metrics.report_lag("test-group", {})  # all partitions revoked
    assert lag_series("test-group") == {}


# --- ClickHouse: the business dashboard

T0 = datetime(2026, 9, 1, tzinfo=UTC)
# (trigger, experiment, arm): the arms a decision is drawn from; '' is a trigger in no experiment.
ARMS = [
    ("delay_notice", "q4", "treatment"),
    ("delay_notice", "q4", HOLDOUT),
    ("payment_assist", "q4", "offer"),
    ("payment_assist", "q4", "no_offer"),
    ("payment_assist", "q4", HOLDOUT),
    ("renewal_reminder", "", ""),
]
EVENT_COLUMNS = ["event_id", "source", "event_type", "event_time", "user_id", "order_id", "attrs"]


def value_data(
    seed: int = 5, decisions: int = 240
) -> tuple[list[list[Any]], list[list[Any]], list[list[Any]]]:
    """Decisions, interventions and events of a small seeded experiment: outcomes of emitted
    interventions, orders, delivery complaints, later activity and cancellations, all in windows that the
    value metrics count (7 and 28 days) or just outside them."""
    rng = Random(seed)
    decision_rows, intervention_rows, events = [], [], []

    def event(
        source: str, kind: str, at: datetime, user: str, attrs: dict[str, Any], order: str = ""
    ) -> None:
        events.append([f"e{len(events)}", source, kind, at, user, order, json.dumps(attrs)])

    for index in range(decisions):
        trigger, experiment, arm = rng.choice(ARMS)
        user, order = f"u{index % 200}", f"o{index}"
        intervention = f"00000000-0000-4000-8000-{index:012d}"
        at = T0 + timedelta(hours=index * 3)
        decision, reason = ("suppressed", "holdout") if arm == HOLDOUT else ("emitted", "")
        if decision == "emitted" and rng.random() < 0.1:
            decision, reason = "suppressed", "frequency_cap"
        common = [intervention, trigger, experiment, arm, user, at, order]
        if rng.random() < 0.2:  # deferred first: not a final decision
            decision_rows.append([*common, "deferred", "quiet_hours", at])
        decision_rows.append([*common, decision, reason, at + timedelta(seconds=1)])
        if decision == "emitted":
            intervention_rows.append([intervention, trigger, user, at])
            reported = {"intervention_id": intervention}
            for outcome, p in (("delivered", 0.9), ("opened", 0.5), ("accepted", 0.3), ("resolved", 0.6)):
                if rng.random() < p:
                    event("outcomes", outcome, at + timedelta(minutes=5), user, reported)
            if rng.random() < 0.2:
                event("outcomes", "escalated", at + timedelta(minutes=9), user, reported)
        if rng.random() < 0.3:
            days = rng.choice([1, 6.9, 7.5])  # 7.5: past the 7-day window
            amount = {"amount": rng.choice([20, 50, 80])}
            event("clickstream", "order_completed", at + timedelta(days=days), user, amount, order)
        if rng.random() < 0.25:
            contact_at = at + timedelta(days=rng.choice([2, 8]))  # 8: past the 7-day window
            event("clickstream", "support_contact", contact_at, user, {"reason": "delivery"}, order)
        if rng.random() < 0.6:
            event("clickstream", "page_view", at + timedelta(days=rng.choice([3, 20, 35])), user, {})
        if rng.random() < 0.05:
            cancelled = {"status": "cancelled"}
            event("subscriptions", "subscription_updated", at + timedelta(days=10), user, cancelled)
    # The latest event: the 28-day churn window of the early decisions has passed, of the late ones not.
    event("clickstream", "page_view", T0 + timedelta(days=45), "u-latest", {})
    return decision_rows, intervention_rows, events


def department_data(seed: int = 5, tickets: int = 60) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """Tickets with the service desk's updates (some reopened, some manual) and feedback with the teams'
    answers, over five weeks from T0: table -> (columns, rows)."""
    rng = Random(seed)
    ticket_rows, update_rows, feedback_rows, answer_rows = [], [], [], []
    for index in range(tickets):
        ticket_id = f"00000000-0000-5000-8000-{index:012d}"
        created = T0 + timedelta(hours=index * 13)
        point = rng.choice(["sp-a", "sp-b", ""])
        ticket_rows.append(
            [ticket_id, f"r{index}", f"u{index}", created, created, "assigned" if point else "manual", point]
        )
        steps = ["accepted", "resolved"] + (["reopened", "resolved"] if rng.random() < 0.3 else [])
        at = created
        for step, status in enumerate(steps[: rng.randint(0, len(steps))]):
            at += timedelta(hours=rng.uniform(1, 30))
            update_rows.append(
                [f"t{index}-{step}", ticket_id, f"u{index}", status, at, created, point or "sp-c", step]
            )
        feedback_at = created + timedelta(minutes=5)
        teams = rng.choice([["product"], ["marketing"], ["product", "marketing"]])
        feedback_rows.append([f"f{index}", f"u{index}", feedback_at, feedback_at, teams])
        for step, team in enumerate(teams):
            if rng.random() < 0.8:
                answered = feedback_at + timedelta(days=rng.uniform(0.2, 5))
                answer_rows.append(
                    [
                        f"a{index}-{step}",
                        f"f{index}",
                        f"u{index}",
                        team,
                        "acknowledged",
                        answered,
                        feedback_at,
                    ]
                )
    return {
        "tickets": (
            [
                "ticket_id",
                "request_id",
                "user_id",
                "created_at",
                "decided_at",
                "dispatch",
                "service_point_id",
            ],
            ticket_rows,
        ),
        "ticket_updates": (
            [
                "update_id",
                "ticket_id",
                "user_id",
                "status",
                "updated_at",
                "ticket_created_at",
                "service_point_id",
                "kafka_offset",
            ],
            update_rows,
        ),
        "feedback_tags": (["feedback_id", "user_id", "event_time", "tagged_at", "teams"], feedback_rows),
        "feedback_updates": (
            ["update_id", "feedback_id", "user_id", "team", "status", "updated_at", "feedback_at"],
            answer_rows,
        ),
    }


SUPPORT_LOAD_COLUMNS = ["made_at", "channel", "slot_start", "horizon_minutes", "forecast", "agents_needed",
                        "agents_on_shift", "contacts_per_agent_hour"]  # fmt: skip


def support_load_data() -> tuple[list[list[Any]], list[list[Any]]]:
    """Forecasts made every 15 minutes for the next 8 slots, of every channel, and the slots' contacts:
    the forecast of a slot made h before it is 10 + h/15 (so each horizon is told apart)."""
    forecasts, actuals = [], []
    slot = timedelta(minutes=15)
    for channel in ("chat", "phone", "email", "other"):
        for k in range(16):
            made = T0 + k * slot
            actuals.append([made, channel, 10 + k, made + slot])
            for ahead in range(1, 9):
                forecasts.append([made, channel, made + ahead * slot, 15 * ahead, 10.0 + ahead, 2, 1, 6.0])
    return forecasts, actuals


@pytest.fixture(scope="module")
def value_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseStore]:
    """The schema and the seeded experiment in the embedded ClickHouse (one chdb path per process)."""
    store = ClickHouseStore(f"chdb://{tmp_path_factory.mktemp('business') / 'ch'}")
    store.apply_schema()
    decisions, interventions, events = value_data()
    store.client.insert(
        "decisions",
        decisions,
        column_names=[
            "intervention_id",
            "trigger",
            "experiment",
            "arm",
            "user_id",
            "event_time",
            "order_id",
            "decision",
            "reason",
            "decided_at",
        ],
    )
    store.client.insert(
        "interventions", interventions, column_names=["intervention_id", "trigger", "user_id", "event_time"]
    )
    store.client.insert("events", events, column_names=EVENT_COLUMNS)
    for table, (columns, data) in department_data().items():
        store.client.insert(table, data, column_names=columns)
    forecasts, actuals = support_load_data()
    store.client.insert("support_load_forecast", forecasts, column_names=SUPPORT_LOAD_COLUMNS)
    store.client.insert(
        "support_load_actual", actuals, column_names=["slot_start", "channel", "contacts", "closed_at"]
    )
    try:
        yield store
    finally:
        store.close()


def as_clickhouse_sql(query: str) -> str:
    """A panel's SQL with the grafana-clickhouse-datasource macros it uses expanded as the plugin does;
    any other macro is an error."""
    start, end = int(RANGE_START.timestamp()), int(RANGE_END.timestamp())
    query = re.sub(
        r"\$__timeFilter\((\w+)\)", rf"\1 >= toDateTime({start}) AND \1 <= toDateTime({end})", query
    )
    query = re.sub(
        r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(toDateTime(\1), INTERVAL 3600 second)", query
    )
    assert "$" not in query, f"a Grafana macro the tests do not expand: {query}"
    return query


def panel_rows(store: ClickHouseStore, title: str) -> list[dict[str, Any]]:
    [query] = [
        target["rawSql"]
        for where, target in targets("grafana-clickhouse-datasource")
        if f"/ {title} /" in where
    ]
    result = store.client.query(as_clickhouse_sql(query))
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def test_every_clickhouse_panel_runs_against_the_schema(value_store: ClickHouseStore) -> None:
    queries = list(targets("grafana-clickhouse-datasource"))
    assert len(queries) >= 6
    for where, target in queries:
        assert "$__timeFilter(" in target["rawSql"], f"{where}: the dashboard's time range must apply"
        try:
            rows = value_store.query(as_clickhouse_sql(target["rawSql"]))
        except Exception as error:  # the driver's errors carry ClickHouse's message
            pytest.fail(f"{where}: {error}")
        assert rows, f"{where}: no rows over the seeded experiment"
        if target["format"] == 0:  # a time series: a time column first
            assert all(isinstance(row[0], datetime) for row in rows), where


def test_a_typo_in_a_panel_query_fails(value_store: ClickHouseStore) -> None:
    with pytest.raises(Exception, match=r"(?i)unknown|missing"):
        value_store.query(
            as_clickhouse_sql("SELECT sum(revenu) FROM intervention_value WHERE $__timeFilter(event_time)")
        )


RATES = (
    "response_rate",
    "adoption_rate",
    "complaint_rate",
    "conversion_rate",
    "revenue_per_decision",
    "churn_rate",
    "automation_share",
)


def same(panel: float | None, report: float | None) -> bool:
    if panel is None or report is None:
        return panel is None and report is None
    return math.isclose(panel, report, rel_tol=1e-9, abs_tol=1e-12)


def report_arms(store: ClickHouseStore) -> dict[tuple[str, str, str], tuple[ArmValue, ArmTotals | None]]:
    """What `forewarn report` computes, by (trigger, experiment, arm), with the arm's holdout."""
    arms = {}
    for value in value_report(store):
        for arm in value.arms:
            arms[(value.trigger, value.experiment, arm.totals.arm)] = (arm, value.holdout)
        if value.holdout is not None:
            arms[(value.trigger, value.experiment, HOLDOUT)] = (arm_value(value.holdout, None), None)
    return arms


def test_value_by_arm_panel_says_what_forewarn_report_says(value_store: ClickHouseStore) -> None:
    expected = report_arms(value_store)
    rows = panel_rows(value_store, "Value by arm")
    assert {(row["trigger"], row["experiment"], row["arm"]) for row in rows} == set(expected)
    assert len(expected) == len(ARMS)
    for row in rows:
        value, _ = expected[(row["trigger"], row["experiment"], row["arm"])]
        for column in ("decisions", "users", "emitted"):
            assert row[column] == getattr(value.totals, column), (row, column)
        for rate in RATES:
            assert same(row[rate], getattr(value, rate)), (row["trigger"], row["arm"], rate, row[rate])
    assert any(row["churn_rate"] is not None for row in rows) and any(row["complaint_rate"] for row in rows)


def test_uplift_panel_says_what_forewarn_report_says(value_store: ClickHouseStore) -> None:
    expected = report_arms(value_store)
    rows = panel_rows(value_store, "Uplift against the holdout arm")
    assert {(row["trigger"], row["experiment"], row["arm"]) for row in rows} == {
        key for key, (_, holdout) in expected.items() if holdout is not None
    }
    for row in rows:
        value, holdout = expected[(row["trigger"], row["experiment"], row["arm"])]
        assert holdout is not None and row["holdout_decisions"] == holdout.decisions
        for column, estimate in (
            ("conversion_uplift", value.conversion_uplift),
            ("complaint_difference", value.complaint_difference),
            ("churn_difference", value.churn_difference),
        ):
            assert estimate is not None and same(row[column], estimate.value), (row, column)
        assert value.conversion_uplift is not None and value.complaint_difference is not None
        assert same(
            row["conversion_uplift_ci95"], value.conversion_uplift.high - value.conversion_uplift.value
        )
        assert same(
            row["complaint_difference_ci95"],
            value.complaint_difference.high - value.complaint_difference.value,
        )
        assert same(row["problem_prevention"], value.problem_prevention)
        control = arm_value(holdout, None)
        assert value.revenue_per_decision is not None and control.revenue_per_decision is not None
        assert same(
            row["revenue_uplift_per_decision"], value.revenue_per_decision - control.revenue_per_decision
        )


# --- live: a demo worker scraped by a real Prometheus


@dataclass
class Live:
    metrics_url: str
    prometheus_url: str
    tools: PrometheusTools

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET a Prometheus API path; the decoded body, also of an error answer (status "error")."""
        url = f"{self.prometheus_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("/api/v1/query", query=expr)


def test_operations_panels_say_what_forewarn_report_says(value_store: ClickHouseStore) -> None:
    """The automation share and the response times per week, on the operations dashboard and in the
    report (its latest week and the four before it)."""
    report = department_report(value_store)
    assert len(report.weeks) == 5 and report.weeks[-1].tickets and report.weeks[-1].cases
    shares = {
        row["time"].date().isoformat(): row["automation_share"]
        for row in panel_rows(value_store, "End-to-end automation share")
    }
    times = {
        row["time"].date().isoformat(): row
        for row in panel_rows(value_store, "Response and resolution times")
    }
    for week in report.weeks:
        assert same(shares[week.week], week.automation), week.week
        assert same(times[week.week]["first_response_p50"], week.first_response_p50), week.week
        assert same(times[week.week]["resolution_p90"], week.resolution_p90), week.week
    assert any(row["reopen_rate"] for row in panel_rows(value_store, "Tickets per service point and week"))


def wait_for(what: str, check: Callable[[], Any], timeout: float, log: Path | None = None) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Stop a process this module started, by its PID: ``sig``, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def prometheus_config(target: str) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml pointed at ``target``, scraping and evaluating every second."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    return config


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tools = ensure_prometheus()
    workdir = tmp_path_factory.mktemp("observability")
    metrics_port, prometheus_port = free_port(), free_port()
    demo_log = workdir / "demo.log"
    # Longer than the tests need: they stop it as soon as they are done (SIGINT, which the demo handles
    # at every stage by stopping its worker and broker; the summary it then prints is not needed here).
    command = [sys.executable, "-m", "streams.tools.cli", "demo", "--duration", "120"]
    command += ["--workdir", str(workdir / "demo"), "--metrics-port", str(metrics_port)]
    with demo_log.open("wb") as output:
        demo = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(f"127.0.0.1:{metrics_port}")))
        prometheus_log = workdir / "prometheus.log"
        with prometheus_log.open("wb") as output:
            prometheus = subprocess.Popen(
                [
                    tools.prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        prometheus_url = f"http://127.0.0.1:{prometheus_port}"
        wait_for("Prometheus to be ready", lambda: reachable(f"{prometheus_url}/-/ready"), 60, prometheus_log)

        def demo_ready() -> bool:
            if demo.poll() is not None:
                pytest.fail(f"forewarn demo exited ({demo.returncode}):\n{demo_log.read_text()[-3000:]}")
            return "worker ready" in demo_log.read_text(errors="replace")

        wait_for("the demo's worker", demo_ready, 120, demo_log)
        yield Live(f"http://127.0.0.1:{metrics_port}/metrics", prometheus_url, tools)
    finally:
        if prometheus is not None:
            stop(prometheus, signal.SIGTERM, 30)
        stop(demo, signal.SIGINT, 90)


@pytest.fixture(scope="module")
def metrics_text(live: Live) -> str:
    with urllib.request.urlopen(live.metrics_url, timeout=30) as response:
        return response.read().decode()


def test_the_workers_metrics_pass_promtool(live: Live, metrics_text: str) -> None:
    assert "forewarn_events_total" in metrics_text
    result = subprocess.run(
        [live.tools.promtool, "check", "metrics"],
        input=metrics_text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_and_alerts_read_only_metrics_the_worker_exports(metrics_text: str) -> None:
    exported = exported_series(metrics_text) | PROMETHEUS_SERIES
    assert {"forewarn_sink_insert_seconds_bucket", "forewarn_events_total"} <= exported
    unknown = {
        (where, name) for where, expr in promql_expressions() for name in metric_names(expr) - exported
    }
    assert not unknown, f"not exported by the worker: {sorted(unknown)}"


def panel_expr(dashboard: str, title: str) -> str:
    [expr] = [
        as_promql(t["expr"])
        for where, t in targets("prometheus")
        if where.startswith(f"{dashboard} / {title} /")
    ]
    return expr


def has_values(answer: dict[str, Any]) -> bool:
    """An instant-query answer with at least one finite sample."""
    return answer["status"] == "success" and any(
        math.isfinite(float(sample["value"][1])) for sample in answer["data"]["result"]
    )


def test_prometheus_accepts_every_expression_and_the_main_panels_show_data(live: Live) -> None:
    for where, expr in promql_expressions():
        answer = live.query(expr)
        assert answer["status"] == "success", f"{where}: {expr}: {answer.get('error')}"
    shown = {
        title: panel_expr(dashboard, title)
        for dashboard, title in (
            ("pipeline.json", "Workers up"),
            ("pipeline.json", "Events / s by topic"),
            ("pipeline.json", "Consumer lag by group and topic"),
            ("pipeline.json", "Sink insert latency (p95) by table"),
            ("pipeline.json", "Rows inserted / s by table"),
            ("proactive.json", "Decisions / s by decision"),
        )
    }
    for title, expr in shown.items():
        wait_for(f"data in the panel {title!r} ({expr})", lambda expr=expr: has_values(live.query(expr)), 90)
    topics = {
        sample["metric"]["topic"] for sample in live.query(shown["Events / s by topic"])["data"]["result"]
    }
    assert {"clickstream", "support_questions"} <= topics
    [workers_up] = live.query(shown["Workers up"])["data"]["result"]
    assert float(workers_up["value"][1]) == 1


def test_the_alerting_rules_evaluate_against_the_workers_series(live: Live) -> None:
    def evaluated() -> list[dict[str, Any]]:
        groups = live.api("/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(rule["health"] != "unknown" for rule in rules) else []

    rules = wait_for("every rule to be evaluated", evaluated, 60)
    assert {rule["name"] for rule in rules} == {rule["alert"] for rule in alert_rules()}
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not broken
    active = {alert["labels"]["alertname"] for alert in live.api("/api/v1/alerts")["data"]["alerts"]}
    assert "ForewarnWorkerDown" not in active, "the demo's worker is up"


def test_the_support_load_queries_read_the_forecasts(value_store: ClickHouseStore) -> None:
    """``forewarn forecast`` and the demo's figures: the latest forecast per channel, and a slot's
    forecast made at least an hour ahead against its contacts."""
    from sinks.support_load import forecast_against_actual, hourly, latest_forecast

    rows = latest_forecast(value_store, "phone")
    assert {row[0] for row in rows} == {"phone"} and len(rows) == 8
    assert {row[0] for row in latest_forecast(value_store)} == {"chat", "phone", "email", "other"}
    # Made at 03:45 for 04:00-05:45: two whole hours, the forecast h ahead being 10 + h/15.
    assert [plan.contacts for plan in hourly(rows)] == [11.0 + 12.0 + 13.0 + 14.0, 15.0 + 16.0 + 17.0 + 18.0]
    slot = int((T0 + timedelta(minutes=15 * 10)).timestamp() * 1000)
    assert forecast_against_actual(value_store, "chat", slot, 60) == (14.0, 60, 20.0)
    assert forecast_against_actual(value_store, "chat", slot + 3600_000 * 24, 60) is None

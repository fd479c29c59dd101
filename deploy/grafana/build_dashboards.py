"""The Grafana dashboards of Forewarn, written to deploy/grafana/dashboards/*.json.

This script is the one place they are defined: edit it, run ``python deploy/grafana/build_dashboards.py``
(with forewarn installed, as for the tests) and commit both. tests/integration/test_observability.py checks
that the JSON is what this script writes, that every PromQL expression parses and names only metrics the
service exports (and that a real Prometheus accepts it), and runs every ClickHouse query against the schema
(sinks/schema/*.sql) and compares the value panels with ``forewarn report``.

Grafana loads the JSON files through provisioning/dashboards/forewarn.yml, with the data sources of
provisioning/datasources/forewarn.yml, whose uids the panels name.

- pipeline: input rates, consumer lag, processing latency, dead letters, the ClickHouse sink, the workers.
- proactive: interventions, contact-policy decisions, outcomes reported by the notifier.
- models: the online models' rolling quality, drift, label delay, learning.
- business: the value of interventions by experiment arm, from ClickHouse (as ``forewarn report``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sinks.report import HOLDOUT, Z95

OUT = Path(__file__).resolve().parent / "dashboards"
PROMETHEUS = {"type": "prometheus", "uid": "forewarn-prometheus"}
CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "forewarn-clickhouse"}
SCHEMA_VERSION = 39
WIDTH = 24  # Grafana's grid is 24 columns wide
# The grafana-clickhouse-datasource query formats.
TIME_SERIES, TABLE = 0, 1

Panel = dict[str, Any]


def prom(expr: str, legend: str = "") -> dict[str, Any]:
    """A Prometheus query; the refId is set by the panel."""
    return {"datasource": PROMETHEUS, "expr": expr, "legendFormat": legend, "range": True, "instant": False}


def sql(query: str, table: bool = False) -> dict[str, Any]:
    """A ClickHouse query, as a time series (a ``time`` column, then one series per other column or per
    value of a string column) or as a table."""
    return {
        "datasource": CLICKHOUSE,
        "editorType": "sql",
        "format": TABLE if table else TIME_SERIES,
        "queryType": "table" if table else "timeseries",
        "rawSql": query.strip(),
    }


def quantiles(histogram: str, by: str = "", legend: str = "") -> list[dict[str, Any]]:
    """p50, p95 and p99 of ``histogram`` over the rate interval, grouped ``by`` labels."""
    labels = f"{by}, le" if by else "le"
    rate = f"sum by ({labels}) (rate({histogram}_bucket[$__rate_interval]))"
    return [
        prom(f"histogram_quantile({q}, {rate})", f"{legend}p{round(q * 100)}".strip())
        for q in (0.5, 0.95, 0.99)
    ]


@dataclass
class Dashboard:
    """Panels placed left to right, then down, on Grafana's grid."""

    uid: str
    title: str
    description: str
    time_from: str = "now-1h"
    refresh: str = "30s"
    panels: list[Panel] = field(default_factory=list)
    x: int = 0
    y: int = 0
    row_height: int = 0

    def row(self, title: str) -> None:
        self._place({"type": "row", "title": title, "collapsed": False, "panels": []}, WIDTH, 1)

    def timeseries(
        self,
        title: str,
        description: str,
        targets: list[dict[str, Any]],
        unit: str,
        width: int = 12,
        **custom: Any,
    ) -> None:
        panel = {
            "type": "timeseries",
            "fieldConfig": {
                "defaults": {"unit": unit, "custom": {"fillOpacity": 10, **custom}},
                "overrides": [],
            },
            "options": {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            },
        }
        self._add(panel, title, description, targets, width, 8)

    def stat(self, title: str, description: str, target: dict[str, Any], unit: str, width: int = 6) -> None:
        panel = {
            "type": "stat",
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value",
                "graphMode": "area",
                "textMode": "auto",
            },
        }
        self._add(panel, title, description, [target], width, 4)

    def table(self, title: str, description: str, target: dict[str, Any], units: dict[str, str]) -> None:
        overrides = [
            {"matcher": {"id": "byName", "options": column}, "properties": [{"id": "unit", "value": unit}]}
            for column, unit in units.items()
        ]
        panel = {
            "type": "table",
            "fieldConfig": {"defaults": {"decimals": 3}, "overrides": overrides},
            "options": {"showHeader": True, "cellHeight": "sm"},
        }
        self._add(panel, title, description, [target], WIDTH, 8)

    def _add(
        self,
        panel: Panel,
        title: str,
        description: str,
        targets: list[dict[str, Any]],
        width: int,
        height: int,
    ) -> None:
        datasource = targets[0]["datasource"]
        panel |= {
            "title": title,
            "description": description,
            "datasource": datasource,
            "targets": [{"refId": chr(ord("A") + i), **target} for i, target in enumerate(targets)],
        }
        self._place(panel, width, height)

    def _place(self, panel: Panel, width: int, height: int) -> None:
        if self.x + width > WIDTH:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)
        if panel["type"] == "row":
            self.x, self.y, self.row_height = 0, self.y + height, 0

    def model(self) -> dict[str, Any]:
        """The Grafana JSON model."""
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["forewarn"],
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,
            "timezone": "browser",
            "time": {"from": self.time_from, "to": "now"},
            "refresh": self.refresh,
            "templating": {"list": []},
            "annotations": {"list": []},
            "links": [
                {
                    "type": "dashboards",
                    "title": "Forewarn",
                    "tags": ["forewarn"],
                    "asDropdown": True,
                    "keepTime": True,
                    "includeVars": False,
                }
            ],
            "panels": self.panels,
        }


def rate(metric: str, by: str = "", matchers: str = "") -> str:
    """Per-second rate of a counter over the rate interval, summed ``by`` labels."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{matchers}[$__rate_interval]))"


def per_second(metric: str, by: str, matchers: str = "") -> dict[str, Any]:
    """A counter's rate, one series per value of the ``by`` labels (named in the legend)."""
    legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))
    return prom(rate(metric, by, matchers), legend)


def pipeline() -> Dashboard:
    board = Dashboard(
        "forewarn-pipeline",
        "Forewarn / Pipeline health",
        "Events in, consumer lag, processing latency, dead letters, the ClickHouse sink and the workers.",
    )
    board.stat(
        "Workers up", "Workers Prometheus scrapes successfully.", prom('sum(up{job="forewarn"})'), "none"
    )
    board.stat("Events / s", "Valid events consumed, all topics.", prom(rate("forewarn_events_total")), "cps")
    board.stat(
        "Consumer lag",
        "Messages behind the high watermarks, all groups and partitions.",
        prom("sum(forewarn_consumer_lag_messages)"),
        "none",
    )
    board.stat(
        "Dead-letter share",
        "Rejected messages among all consumed ones (valid events plus dead letters).",
        prom(
            f"({rate('forewarn_dead_letters_total')} or vector(0)) / ({rate('forewarn_events_total')}"
            f" + ({rate('forewarn_dead_letters_total')} or vector(0)))"
        ),
        "percentunit",
    )
    board.row("Input")
    board.timeseries(
        "Events / s by topic",
        "Valid events consumed, by source topic.",
        [per_second("forewarn_events_total", "topic")],
        "cps",
    )
    board.timeseries(
        "Events / s by type",
        "Valid events consumed, by event type.",
        [per_second("forewarn_events_total", "event_type")],
        "cps",
    )
    board.timeseries(
        "Consumer lag by group and topic",
        "Messages between each consumer group's position and the high watermark, summed over partitions."
        " Growing means the workers do not keep up (alert ForewarnConsumerLagGrowing).",
        [prom("sum by (group, topic) (forewarn_consumer_lag_messages)", "{{group}} {{topic}}")],
        "none",
    )
    board.timeseries(
        "Event processing latency",
        "From an event's event time to the end of its processing by the per-user agent: includes how late"
        " the event arrived.",
        quantiles("forewarn_event_processing_seconds"),
        "s",
    )
    board.timeseries(
        "Dead letters / s by reason",
        "Messages rejected to the dead-letter topic; the dead_letters table in ClickHouse has the payloads.",
        [per_second("forewarn_dead_letters_total", "reason")],
        "cps",
    )
    board.timeseries(
        "Timer ticks and scores / s",
        "Ticks the timer sweep sent to silent users, and user scores published.",
        [
            prom(rate("forewarn_timer_ticks_total"), "timer ticks"),
            prom(rate("forewarn_scores_published_total"), "scores published"),
        ],
        "cps",
    )
    board.row("ClickHouse sink")
    board.timeseries(
        "Sink insert latency (p95) by table",
        "Duration of successful ClickHouse inserts, 95th percentile.",
        [
            prom(
                "histogram_quantile(0.95, sum by (table, le)"
                " (rate(forewarn_sink_insert_seconds_bucket[$__rate_interval])))",
                "{{table}}",
            )
        ],
        "s",
    )
    board.timeseries(
        "Sink insert failures / s by table",
        "Failed ClickHouse inserts; the sink retries the batch (alert ForewarnSinkInsertFailures).",
        [per_second("forewarn_sink_insert_failures_total", "table")],
        "cps",
    )
    board.timeseries(
        "Rows inserted / s by table",
        "Rows the sink inserted into ClickHouse.",
        [per_second("forewarn_sink_rows_total", "table")],
        "cps",
    )
    board.timeseries(
        "Rows per insert by table (mean)",
        "Mean batch size: rows per ClickHouse insert.",
        [
            prom(
                rate("forewarn_sink_batch_rows_sum", "table")
                + " / "
                + rate("forewarn_sink_batch_rows_count", "table"),
                "{{table}}",
            )
        ],
        "none",
    )
    board.timeseries(
        "Duplicate rows dropped / s by table",
        "Rows the sink dropped because their id was already stored (upstream re-processing after a crash).",
        [per_second("forewarn_sink_duplicates_total", "table")],
        "cps",
    )
    board.timeseries(
        "Erased rows dropped / s by table",
        "Rows of an erased user, timed up to the erasure, that reached the sink after it.",
        [per_second("forewarn_sink_erased_rows_dropped_total", "table")],
        "cps",
    )
    board.row("Workers")
    board.timeseries(
        "Partitions held by worker",
        "Topic partitions each worker holds, active (consumed and served) or standby (a table's changelog"
        " kept warm for a takeover). A rebalance moves them when a worker comes or goes.",
        [prom("sum by (instance, role) (forewarn_assigned_partitions)", "{{instance}} {{role}}")],
        "none",
        width=WIDTH,
    )
    board.timeseries(
        "CPU by worker",
        "CPU seconds per second used by each worker process.",
        [prom('rate(process_cpu_seconds_total{job="forewarn"}[$__rate_interval])', "{{instance}}")],
        "percentunit",
    )
    board.timeseries(
        "Resident memory by worker",
        "Resident set size of each worker process.",
        [prom('process_resident_memory_bytes{job="forewarn"}', "{{instance}}")],
        "bytes",
    )
    board.timeseries(
        "CRM/ERP API calls / s by route and status",
        "API calls answered (and audited) by the workers.",
        [per_second("forewarn_api_requests_total", "route, status")],
        "reqps",
    )
    board.timeseries(
        "API reads forwarded / s by route",
        "Reads a worker forwarded to the worker holding the user's partition.",
        [per_second("forewarn_api_forwarded_total", "route")],
        "reqps",
    )
    return board


def proactive() -> Dashboard:
    board = Dashboard(
        "forewarn-proactive",
        "Forewarn / Proactive service",
        "Interventions by trigger, contact-policy decisions, and the outcomes the notifier reports."
        " Value by experiment arm is on the business dashboard.",
    )
    window = "1h"

    def share(numerator: str, denominator: str) -> str:
        outcomes = "forewarn_outcomes_total"
        return (
            f'sum(increase({outcomes}{{outcome=~"{numerator}"}}[{window}]))'
            f' / sum(increase({outcomes}{{outcome=~"{denominator}"}}[{window}]))'
        )

    board.stat(
        "Interventions / s",
        "Interventions emitted, all triggers.",
        prom(rate("forewarn_interventions_total")),
        "cps",
    )
    board.stat(
        "Suppressed share (1 h)",
        "Final decisions that were suppressed (holdout arm, opt-out, frequency cap, ...), last hour.",
        prom(
            'sum(increase(forewarn_decisions_total{decision="suppressed"}[1h]))'
            ' / sum(increase(forewarn_decisions_total{decision=~"emitted|suppressed"}[1h]))'
        ),
        "percentunit",
    )
    board.stat(
        "Open rate (1 h)",
        "Interventions opened / delivered, from the notifier's outcome counts over the last hour.",
        prom(share("opened", "delivered")),
        "percentunit",
    )
    board.stat(
        "Automated resolution (1 h)",
        "Resolved by the automated agent / (resolved + escalated to a human), last hour.",
        prom(share("resolved", "resolved|escalated")),
        "percentunit",
    )
    board.timeseries(
        "Interventions / s by trigger",
        "Interventions emitted to the notifier.",
        [per_second("forewarn_interventions_total", "trigger")],
        "cps",
    )
    board.timeseries(
        "Intervention latency by trigger (p95)",
        "From the event that caused an intervention to its emission (alert ForewarnInterventionsLate).",
        [
            prom(
                "histogram_quantile(0.95, sum by (trigger, le)"
                " (rate(forewarn_intervention_latency_seconds_bucket[$__rate_interval])))",
                "{{trigger}}",
            )
        ],
        "s",
    )
    board.timeseries(
        "Decisions / s by decision",
        "Contact-policy decisions: emitted, deferred (e.g. quiet hours, decided again later) or suppressed.",
        [per_second("forewarn_decisions_total", "decision")],
        "cps",
    )
    board.timeseries(
        "Suppressions / s by reason",
        "Why the contact policy suppressed interventions: holdout arm, opt-out, frequency cap, ...",
        [per_second("forewarn_decisions_total", "reason", '{decision="suppressed"}')],
        "cps",
    )
    board.timeseries(
        "Deferrals / s by reason",
        "Interventions the contact policy deferred, by reason.",
        [per_second("forewarn_decisions_total", "reason", '{decision="deferred"}')],
        "cps",
    )
    board.timeseries(
        "Outcomes / s by outcome",
        "What the notifier reported back: delivered, opened, accepted, converted, dismissed, resolved, ...",
        [per_second("forewarn_outcomes_total", "outcome")],
        "cps",
    )
    board.timeseries(
        "Response rates (1 h window)",
        "Outcome counts over the last hour against delivered ones: opened, accepted and converted. Counts"
        " of outcome reports, not of interventions; the per-arm, intent-to-treat rates are on the business"
        " dashboard.",
        [
            prom(share("opened", "delivered"), "opened / delivered"),
            prom(share("accepted", "delivered"), "accepted / delivered"),
            prom(share("converted", "delivered"), "converted / delivered"),
        ],
        "percentunit",
    )
    board.timeseries(
        "Service processes / s",
        "Tickets by dispatch, order requests by result, hot-issue alerts.",
        [
            prom(rate("forewarn_tickets_total", "dispatch"), "ticket {{dispatch}}"),
            prom(rate("forewarn_orders_total", "result"), "order {{result}}"),
            prom(rate("forewarn_hot_issues_total", "category"), "hot issue {{category}}"),
        ],
        "cps",
    )
    return board


def models() -> Dashboard:
    board = Dashboard(
        "forewarn-models",
        "Forewarn / Models",
        "The online models' progressive-validation quality per partition, drift, label delay and learning.",
    )

    def quality(model: str, metric: str) -> list[dict[str, Any]]:
        selector = f'forewarn_model_quality{{model="{model}", metric="{metric}"}}'
        return [
            prom(f"avg by (partition) ({selector})", "partition {{partition}}"),
            prom(f"avg({selector})", "mean"),
        ]

    board.timeseries(
        "Churn ROC AUC",
        "Rolling ROC AUC of each partition's churn model over its last 5000 examples, and the mean (alerts"
        " ForewarnModelAucLow, ForewarnModelAucFalling).",
        quality("churn", "roc_auc"),
        "none",
    )
    board.timeseries(
        "Churn log loss",
        "Rolling log loss of each partition's churn model.",
        quality("churn", "log_loss"),
        "none",
    )
    board.timeseries(
        "Intent macro F1",
        "Rolling macro F1 of each partition's intent model.",
        quality("intent", "macro_f1"),
        "none",
    )
    board.timeseries(
        "Intent accuracy",
        "Rolling accuracy of each partition's intent model.",
        quality("intent", "accuracy"),
        "none",
    )
    board.timeseries(
        "Drifts detected (per hour)",
        "Drifts ADWIN detected in a model's per-example loss, counted over the last hour.",
        [prom("sum by (model) (increase(forewarn_model_drifts_total[1h]))", "{{model}}")],
        "none",
    )
    board.timeseries(
        "Label delay",
        "Event time from an example's features to its label: how long a model waits to learn.",
        quantiles("forewarn_model_label_delay_seconds", "model", "{{model}} "),
        "s",
    )
    board.timeseries(
        "Examples learned / s by model and label",
        "Labelled examples the models learned.",
        [per_second("forewarn_model_examples_total", "model, label")],
        "cps",
    )
    board.timeseries(
        "Checkpoints and feedback / s",
        "Partition models written to their changelog; feedback corrections received and learned.",
        [
            prom(rate("forewarn_model_checkpoints_total"), "model checkpoints"),
            prom(rate("forewarn_feedback_labels_total"), "feedback corrections"),
            prom(rate("forewarn_feedback_corrections_learned_total"), "corrections learned"),
        ],
        "cps",
    )
    return board


# The value of interventions per trigger, experiment and arm over the decisions in the dashboard's time
# range, from the intervention_value view (sinks/schema/0002_policy.sql). With a range that holds every
# decision, the figures are those of value_by_arm and `forewarn report` (sinks/report.py): intent-to-treat
# rates over every final decision of the arm.
VALUE_BY_ARM = """
SELECT
    trigger,
    experiment,
    arm,
    count() AS decisions,
    uniqExact(user_id) AS users,
    countIf(decision = 'emitted') AS emitted,
    sum(responded) / nullIf(sum(delivered), 0) AS response_rate,
    sum(accepted) / nullIf(countIf(decision = 'emitted'), 0) AS adoption_rate,
    sum(complained) / count() AS complaint_rate,
    sum(converted) / count() AS conversion_rate,
    sum(revenue) / count() AS revenue_per_decision,
    countIf(churn_observable = 1 AND churned = 1) / nullIf(sum(churn_observable), 0) AS churn_rate,
    sum(resolved_automatically) / nullIf(sum(resolved_automatically) + sum(escalated), 0) AS automation_share
FROM intervention_value
WHERE $__timeFilter(event_time)
GROUP BY trigger, experiment, arm
ORDER BY trigger, experiment, arm
"""

# Each non-holdout arm against the holdout arm of its trigger and experiment: differences of rates with
# the half-width of their 95% Wald interval (as sinks.report.proportion_difference), problem prevention.
UPLIFT_VS_HOLDOUT = f"""
WITH arms AS
(
    SELECT
        trigger,
        experiment,
        arm,
        count() AS n,
        sum(complained) / count() AS complaint,
        sum(converted) / count() AS conversion,
        sum(revenue) / count() AS revenue_mean,
        countIf(churn_observable = 1 AND churned = 1) / nullIf(sum(churn_observable), 0) AS churn
    FROM intervention_value
    WHERE $__timeFilter(event_time)
    GROUP BY trigger, experiment, arm
)
SELECT
    a.trigger AS trigger,
    a.experiment AS experiment,
    a.arm AS arm,
    a.n AS decisions,
    h.n AS holdout_decisions,
    a.conversion - h.conversion AS conversion_uplift,
    {Z95!r} * sqrt(a.conversion * (1 - a.conversion) / a.n + h.conversion * (1 - h.conversion) / h.n)
        AS conversion_uplift_ci95,
    a.complaint - h.complaint AS complaint_difference,
    {Z95!r} * sqrt(a.complaint * (1 - a.complaint) / a.n + h.complaint * (1 - h.complaint) / h.n)
        AS complaint_difference_ci95,
    1 - a.complaint / nullIf(h.complaint, 0) AS problem_prevention,
    a.revenue_mean - h.revenue_mean AS revenue_uplift_per_decision,
    a.churn - h.churn AS churn_difference
FROM arms AS a
INNER JOIN arms AS h ON h.trigger = a.trigger AND h.experiment = a.experiment AND h.arm = '{HOLDOUT}'
WHERE a.arm != '{HOLDOUT}'
ORDER BY trigger, experiment, arm
"""

RATE_UNITS = ("response_rate", "adoption_rate", "complaint_rate", "conversion_rate", "churn_rate")


def business() -> Dashboard:
    board = Dashboard(
        "forewarn-business",
        "Forewarn / Business value",
        "The value of proactive interventions by experiment arm, from ClickHouse: each arm against the"
        " holdout arm that got nothing. Over the decisions in the time range; over all of them, the figures"
        " of `forewarn report`.",
        time_from="now-30d",
        refresh="5m",
    )
    board.table(
        "Value by arm",
        "Per trigger, experiment and arm, intent-to-treat over every final decision (emitted or"
        " suppressed) made in the time range. Response = responded / delivered, adoption = accepted /"
        " emitted; complaints, conversions and revenue within 7 days; churn within 28 days, among the"
        " decisions whose 28 days have passed; automation = resolved without a human / (that + escalated).",
        sql(VALUE_BY_ARM, table=True),
        {
            **dict.fromkeys(RATE_UNITS, "percentunit"),
            "automation_share": "percentunit",
            "revenue_per_decision": "currencyUSD",
        },
    )
    board.table(
        "Uplift against the holdout arm",
        "Each arm minus its holdout arm, with the half-width of the 95% confidence interval (an interval"
        " that holds 0 shows no effect yet). Problem prevention: 1 - complaint rate / the holdout's.",
        sql(UPLIFT_VS_HOLDOUT, table=True),
        {
            **dict.fromkeys(
                (
                    "conversion_uplift",
                    "conversion_uplift_ci95",
                    "complaint_difference",
                    "complaint_difference_ci95",
                    "problem_prevention",
                    "churn_difference",
                ),
                "percentunit",
            ),
            "revenue_uplift_per_decision": "currencyUSD",
        },
    )
    board.timeseries(
        "Final decisions by trigger and arm",
        "Emitted or suppressed decisions (the last one of each intervention), by when the situation arose.",
        [
            sql(
                """
SELECT
    $__timeInterval(event_time) AS time,
    concat(trigger, ' ', if(arm = '', '(no experiment)', arm)) AS series,
    uniqExact(intervention_id) AS decisions
FROM decisions FINAL
WHERE decision IN ('emitted', 'suppressed') AND $__timeFilter(event_time)
GROUP BY time, series
ORDER BY time
"""
            )
        ],
        "none",
        drawStyle="bars",
    )
    board.timeseries(
        "Outcomes by outcome",
        "Outcomes the notifier reported, by when they happened.",
        [
            sql(
                """
SELECT $__timeInterval(event_time) AS time, outcome, count() AS outcomes
FROM intervention_outcomes
WHERE $__timeFilter(event_time)
GROUP BY time, outcome
ORDER BY time
"""
            )
        ],
        "none",
        drawStyle="bars",
    )
    board.timeseries(
        "Interventions by trigger",
        "Interventions sent, per minute of their event time (interventions_per_minute).",
        [
            sql(
                """
SELECT $__timeInterval(minute) AS time, trigger, sum(interventions) AS interventions
FROM interventions_per_minute
WHERE $__timeFilter(minute)
GROUP BY time, trigger
ORDER BY time
"""
            )
        ],
        "none",
        drawStyle="bars",
    )
    board.timeseries(
        "Revenue within 7 days by arm",
        "Revenue of orders completed within 7 days of a decision, by the decision's time and arm.",
        [
            sql(
                """
SELECT
    $__timeInterval(event_time) AS time,
    concat(trigger, ' ', if(arm = '', '(no experiment)', arm)) AS series,
    sum(revenue) AS revenue
FROM intervention_value
WHERE $__timeFilter(event_time)
GROUP BY time, series
ORDER BY time
"""
            )
        ],
        "currencyUSD",
        drawStyle="bars",
    )
    return board


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> Grafana JSON model, for every dashboard."""
    return {
        f"{name}.json": build().model()
        for name, build in (
            ("pipeline", pipeline),
            ("proactive", proactive),
            ("models", models),
            ("business", business),
        )
    }


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, model in dashboards().items():
        (OUT / name).write_text(render(model), encoding="utf-8")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()

"""The Grafana dashboards of Forewarn, written to deploy/grafana/dashboards/*.json.

This script is the one place they are defined: edit it, run ``python deploy/grafana/build_dashboards.py``
(with forewarn[test] installed, as for the tests) and commit both.
tests/integration/test_observability.py checks that the JSON is what this script writes, that every
PromQL expression parses and names only metrics the service exports (streams/contracts/metrics.py; a
real Prometheus accepts them too), and runs every ClickHouse query against the schema
(sinks/schema/*.sql) and compares the value panels with ``forewarn report``.

The dashboards are built with the Grafana Foundation SDK, generated from the schemas of the Grafana
release docker-compose.yml runs (11.6): it writes that release's schema version and lays the panels out
left to right, then down, on Grafana's 24-column grid. Grafana loads the JSON files through
provisioning/dashboards/forewarn.yml, with the data sources of provisioning/datasources/forewarn.yml,
whose uids the panels name.

- pipeline: input rates, consumer lag, processing latency, dead letters, the ClickHouse sink, the workers.
- proactive: interventions, contact-policy decisions, outcomes reported by the notifier.
- models: the online models' rolling quality, drift, label delay, learning.
- business: the value of interventions by experiment arm, from ClickHouse (as ``forewarn report``).
- operations: cross-department response times per service point, team and week, and the end-to-end
  automation share, from ClickHouse (sinks/schema/0011_department_updates.sql, as ``forewarn report``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import ascii_uppercase
from typing import Self

from grafana_foundation_sdk.builders import common as options
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as schema

from sinks.report import HOLDOUT, Z95

OUT = Path(__file__).resolve().parent / "dashboards"
PROMETHEUS = schema.DataSourceRef(type_val="prometheus", uid="forewarn-prometheus")
CLICKHOUSE = schema.DataSourceRef(type_val="grafana-clickhouse-datasource", uid="forewarn-clickhouse")

Panel = stat.Panel | timeseries.Panel | table.Panel | dashboard.Row


def prom(expr: str, legend: str = "") -> prometheus.Dataquery:
    """A Prometheus range query; ``legend`` names its series (``{{label}}`` for a label's value)."""
    return prometheus.Dataquery().datasource(PROMETHEUS).expr(expr).legend_format(legend).range()


@dataclass
class SQL(Dataquery, Builder["SQL"]):
    """A grafana-clickhouse-datasource query, as a time series (a ``time`` column, then one series per
    other column or per value of a string column) or as a ``table``. The SDK has query types for Grafana's
    core data sources only; a plugin's query is any Dataquery that encodes itself (``to_json``)."""

    sql: str
    table: bool = False
    ref_id: str = ""  # set by board()

    def build(self) -> Self:
        return self

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": CLICKHOUSE,
            "editorType": "sql",
            "format": 1 if self.table else 0,  # the plugin's formats: 0 time series, 1 table
            "queryType": "table" if self.table else "timeseries",
            "rawSql": self.sql.strip(),
        }


def rate(metric: str, by: str = "", matchers: str = "") -> str:
    """Per-second rate of a counter over the rate interval, summed ``by`` labels."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{matchers}[$__rate_interval]))"


def per_second(metric: str, by: str, matchers: str = "") -> prometheus.Dataquery:
    """A counter's rate, one series per value of the ``by`` labels (named in the legend)."""
    legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))
    return prom(rate(metric, by, matchers), legend)


def quantiles(histogram: str, by: str = "", legend: str = "") -> list[prometheus.Dataquery]:
    """p50, p95 and p99 of ``histogram`` over the rate interval, grouped ``by`` labels."""
    labels = f"{by}, le" if by else "le"
    rate = f"sum by ({labels}) (rate({histogram}_bucket[$__rate_interval]))"
    return [
        prom(f"histogram_quantile({q}, {rate})", f"{legend}p{round(q * 100)}".strip())
        for q in (0.5, 0.95, 0.99)
    ]


def _place(
    panel: stat.Panel | timeseries.Panel | table.Panel,
    title: str,
    description: str,
    queries: list[Dataquery],
    width: int,
    height: int,
) -> None:
    """Title, describe and size ``panel``; it reads ``queries`` from their data source."""
    source = CLICKHOUSE if isinstance(queries[0], SQL) else PROMETHEUS
    panel.title(title).description(description).datasource(source).span(width).height(height)
    for query in queries:
        panel.with_target(query)


def graph(
    title: str, description: str, unit: str, *queries: Dataquery, width: int = 12, bars: bool = False
) -> timeseries.Panel:
    """A time series panel of ``queries``, lines (or ``bars``) over a light fill."""
    panel = timeseries.Panel().unit(unit).fill_opacity(10)
    if bars:
        panel.draw_style(common.GraphDrawStyle.BARS)
    legend = options.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
    panel.legend(legend.placement(common.LegendPlacement.BOTTOM).show_legend(True))
    panel.tooltip(
        options.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)
    )
    _place(panel, title, description, list(queries), width, 8)
    return panel


def value(title: str, description: str, unit: str, query: Dataquery) -> stat.Panel:
    """A stat panel: the query's last value, over its sparkline."""
    panel = stat.Panel().unit(unit).text_mode(common.BigValueTextMode.AUTO)
    panel.reduce_options(options.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
    panel.color_mode(common.BigValueColorMode.VALUE).graph_mode(common.BigValueGraphMode.AREA)
    _place(panel, title, description, [query], 6, 4)
    return panel


def tabular(title: str, description: str, query: SQL, units: dict[str, str]) -> table.Panel:
    """A full-width table panel; numbers with 3 decimals, the ``units`` of named columns."""
    panel = table.Panel().decimals(3).show_header(True).cell_height(common.TableCellHeight.SM)
    for column, unit in units.items():
        panel.override_by_name(column, [schema.DynamicConfigValue(id_val="unit", value=unit)])
    _place(panel, title, description, [query], 24, 8)
    return panel


def board(
    uid: str, title: str, description: str, *panels: Panel, time_from: str = "now-1h", refresh: str = "30s"
) -> schema.Dashboard:
    """The dashboard of ``panels``, tagged and linked to the other Forewarn dashboards; panels are
    numbered and their queries lettered, as Grafana's editor does. The SDK places panels left to right and
    starts a new line once one is full, or at a row: the widths between rows must fill lines of 24."""
    builder = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["forewarn"])
        .version(1)
        .editable()
        .tooltip(schema.DashboardCursorSync.CROSSHAIR)
        .timezone("browser")
        .time(time_from, "now")
        .refresh(refresh)
    )
    builder.link(
        dashboard.DashboardLink("Forewarn")
        .type(schema.DashboardLinkType.DASHBOARDS)
        .tags(["forewarn"])
        .as_dropdown(True)
        .keep_time(True)
        .include_vars(False)
    )
    for panel in panels:
        if isinstance(panel, dashboard.Row):
            builder.with_row(panel)
        else:
            builder.with_panel(panel)
    model = builder.build()
    for number, built in enumerate(model.panels, 1):
        built.id_val = number
        for ref_id, query in zip(ascii_uppercase, getattr(built, "targets", None) or [], strict=False):
            query.ref_id = ref_id
    return model


def pipeline() -> schema.Dashboard:
    return board(
        "forewarn-pipeline",
        "Forewarn / Pipeline health",
        "Events in, consumer lag, processing latency, dead letters, the ClickHouse sink and the workers.",
        value(
            "Workers up", "Workers Prometheus scrapes successfully.", "none", prom('sum(up{job="forewarn"})')
        ),
        value("Events / s", "Valid events consumed, all topics.", "cps", prom(rate("forewarn_events_total"))),
        value(
            "Consumer lag",
            "Messages behind the high watermarks, all groups and partitions.",
            "none",
            prom("sum(forewarn_consumer_lag_messages)"),
        ),
        value(
            "Dead-letter share",
            "Rejected messages among all consumed ones (valid events plus dead letters).",
            "percentunit",
            prom(
                f"({rate('forewarn_dead_letters_total')} or vector(0)) / ({rate('forewarn_events_total')}"
                f" + ({rate('forewarn_dead_letters_total')} or vector(0)))"
            ),
        ),
        dashboard.Row("Input"),
        graph(
            "Events / s by topic",
            "Valid events consumed, by source topic.",
            "cps",
            per_second("forewarn_events_total", "topic"),
        ),
        graph(
            "Events / s by type",
            "Valid events consumed, by event type.",
            "cps",
            per_second("forewarn_events_total", "event_type"),
        ),
        graph(
            "Consumer lag by group and topic",
            "Messages between each consumer group's position and the high watermark, summed over partitions."
            " Growing means the workers do not keep up (alert ForewarnConsumerLagGrowing).",
            "none",
            prom("sum by (group, topic) (forewarn_consumer_lag_messages)", "{{group}} {{topic}}"),
        ),
        graph(
            "Event processing latency",
            "From an event's event time to the end of its processing by the per-user agent: includes how"
            " late the event arrived.",
            "s",
            *quantiles("forewarn_event_processing_seconds"),
        ),
        graph(
            "Dead letters / s by reason",
            "Messages rejected to the dead-letter topic; the dead_letters table in ClickHouse has the"
            " payloads.",
            "cps",
            per_second("forewarn_dead_letters_total", "reason"),
        ),
        graph(
            "Timer ticks and scores / s",
            "Ticks the timer sweep sent to silent users, and user scores published.",
            "cps",
            prom(rate("forewarn_timer_ticks_total"), "timer ticks"),
            prom(rate("forewarn_scores_published_total"), "scores published"),
        ),
        dashboard.Row("ClickHouse sink"),
        graph(
            "Sink insert latency (p95) by table",
            "Duration of successful ClickHouse inserts, 95th percentile.",
            "s",
            prom(
                "histogram_quantile(0.95, sum by (table, le)"
                " (rate(forewarn_sink_insert_seconds_bucket[$__rate_interval])))",
                "{{table}}",
            ),
        ),
        graph(
            "Sink insert failures / s by table",
            "Failed ClickHouse inserts; the sink retries the batch (alert ForewarnSinkInsertFailures).",
            "cps",
            per_second("forewarn_sink_insert_failures_total", "table"),
        ),
        graph(
            "Rows inserted / s by table",
            "Rows the sink inserted into ClickHouse.",
            "cps",
            per_second("forewarn_sink_rows_total", "table"),
        ),
        graph(
            "Rows per insert by table (mean)",
            "Mean batch size: rows per ClickHouse insert.",
            "none",
            prom(
                f"{rate('forewarn_sink_batch_rows_sum', 'table')}"
                f" / {rate('forewarn_sink_batch_rows_count', 'table')}",
                "{{table}}",
            ),
        ),
        graph(
            "Duplicate rows dropped / s by table",
            "Rows the sink dropped because their id was already stored (upstream re-processing after a"
            " crash).",
            "cps",
            per_second("forewarn_sink_duplicates_total", "table"),
        ),
        graph(
            "Erased rows dropped / s by table",
            "Rows of an erased user, timed up to the erasure, that reached the sink after it.",
            "cps",
            per_second("forewarn_sink_erased_rows_dropped_total", "table"),
        ),
        dashboard.Row("Workers"),
        graph(
            "Partitions held by worker",
            "Topic partitions each worker holds, active (consumed and served) or standby (a table's"
            " changelog kept warm for a takeover). A rebalance moves them when a worker comes or goes.",
            "none",
            prom("sum by (instance, role) (forewarn_assigned_partitions)", "{{instance}} {{role}}"),
            width=24,
        ),
        graph(
            "CPU by worker",
            "CPU seconds per second used by each worker process.",
            "percentunit",
            prom('rate(process_cpu_seconds_total{job="forewarn"}[$__rate_interval])', "{{instance}}"),
        ),
        graph(
            "Resident memory by worker",
            "Resident set size of each worker process.",
            "bytes",
            prom('process_resident_memory_bytes{job="forewarn"}', "{{instance}}"),
        ),
        graph(
            "CRM/ERP API calls / s by route and status",
            "API calls answered (and audited) by the workers.",
            "reqps",
            per_second("forewarn_api_requests_total", "route, status"),
        ),
        graph(
            "API reads forwarded / s by route",
            "Reads a worker forwarded to the worker holding the user's partition.",
            "reqps",
            per_second("forewarn_api_forwarded_total", "route"),
        ),
    )


def outcome_share(numerator: str, denominator: str) -> str:
    """Outcome reports matching ``numerator`` over those matching ``denominator`` (regexes), last hour."""
    return (
        f'sum(increase(forewarn_outcomes_total{{outcome=~"{numerator}"}}[1h]))'
        f' / sum(increase(forewarn_outcomes_total{{outcome=~"{denominator}"}}[1h]))'
    )


def proactive() -> schema.Dashboard:
    return board(
        "forewarn-proactive",
        "Forewarn / Proactive service",
        "Interventions by trigger, contact-policy decisions, and the outcomes the notifier reports."
        " Value by experiment arm is on the business dashboard.",
        value(
            "Interventions / s",
            "Interventions emitted, all triggers.",
            "cps",
            prom(rate("forewarn_interventions_total")),
        ),
        value(
            "Suppressed share (1 h)",
            "Final decisions that were suppressed (holdout arm, opt-out, frequency cap, ...), last hour.",
            "percentunit",
            prom(
                'sum(increase(forewarn_decisions_total{decision="suppressed"}[1h]))'
                ' / sum(increase(forewarn_decisions_total{decision=~"emitted|suppressed"}[1h]))'
            ),
        ),
        value(
            "Open rate (1 h)",
            "Interventions opened / delivered, from the notifier's outcome counts over the last hour.",
            "percentunit",
            prom(outcome_share("opened", "delivered")),
        ),
        value(
            "Automated resolution (1 h)",
            "Resolved by the automated agent / (resolved + escalated to a human), last hour.",
            "percentunit",
            prom(outcome_share("resolved", "resolved|escalated")),
        ),
        graph(
            "Interventions / s by trigger",
            "Interventions emitted to the notifier.",
            "cps",
            per_second("forewarn_interventions_total", "trigger"),
        ),
        graph(
            "Intervention latency by trigger (p95)",
            "From the event that caused an intervention to its emission (alert ForewarnInterventionsLate).",
            "s",
            prom(
                "histogram_quantile(0.95, sum by (trigger, le)"
                " (rate(forewarn_intervention_latency_seconds_bucket[$__rate_interval])))",
                "{{trigger}}",
            ),
        ),
        graph(
            "Decisions / s by decision",
            "Contact-policy decisions: emitted, deferred (e.g. quiet hours, decided again later) or"
            " suppressed.",
            "cps",
            per_second("forewarn_decisions_total", "decision"),
        ),
        graph(
            "Suppressions / s by reason",
            "Why the contact policy suppressed interventions: holdout arm, opt-out, frequency cap, ...",
            "cps",
            per_second("forewarn_decisions_total", "reason", '{decision="suppressed"}'),
        ),
        graph(
            "Deferrals / s by reason",
            "Interventions the contact policy deferred, by reason.",
            "cps",
            per_second("forewarn_decisions_total", "reason", '{decision="deferred"}'),
        ),
        graph(
            "Outcomes / s by outcome",
            "What the notifier reported back: delivered, opened, accepted, converted, dismissed, resolved,"
            " ...",
            "cps",
            per_second("forewarn_outcomes_total", "outcome"),
        ),
        graph(
            "Response rates (1 h window)",
            "Outcome counts over the last hour against delivered ones: opened, accepted and converted."
            " Counts of outcome reports, not of interventions; the per-arm, intent-to-treat rates are on"
            " the business dashboard.",
            "percentunit",
            prom(outcome_share("opened", "delivered"), "opened / delivered"),
            prom(outcome_share("accepted", "delivered"), "accepted / delivered"),
            prom(outcome_share("converted", "delivered"), "converted / delivered"),
        ),
        graph(
            "Service processes / s",
            "Tickets by dispatch, order requests by result, hot-issue alerts.",
            "cps",
            prom(rate("forewarn_tickets_total", "dispatch"), "ticket {{dispatch}}"),
            prom(rate("forewarn_orders_total", "result"), "order {{result}}"),
            prom(rate("forewarn_hot_issues_total", "category"), "hot issue {{category}}"),
        ),
    )


def quality(model: str, metric: str) -> list[prometheus.Dataquery]:
    """A model's rolling quality ``metric``, per partition and the mean over partitions."""
    selector = f'forewarn_model_quality{{model="{model}", metric="{metric}"}}'
    return [
        prom(f"avg by (partition) ({selector})", "partition {{partition}}"),
        prom(f"avg({selector})", "mean"),
    ]


def models() -> schema.Dashboard:
    return board(
        "forewarn-models",
        "Forewarn / Models",
        "The online models' progressive-validation quality per partition, drift, label delay and learning.",
        graph(
            "Churn ROC AUC",
            "Rolling ROC AUC of each partition's churn model over its last 5000 examples, and the mean"
            " (alerts ForewarnModelAucLow, ForewarnModelAucFalling).",
            "none",
            *quality("churn", "roc_auc"),
        ),
        graph(
            "Churn log loss",
            "Rolling log loss of each partition's churn model.",
            "none",
            *quality("churn", "log_loss"),
        ),
        graph(
            "Intent macro F1",
            "Rolling macro F1 of each partition's intent model.",
            "none",
            *quality("intent", "macro_f1"),
        ),
        graph(
            "Intent accuracy",
            "Rolling accuracy of each partition's intent model.",
            "none",
            *quality("intent", "accuracy"),
        ),
        graph(
            "Drifts detected (per hour)",
            "Drifts ADWIN detected in a model's per-example loss, counted over the last hour.",
            "none",
            prom("sum by (model) (increase(forewarn_model_drifts_total[1h]))", "{{model}}"),
        ),
        graph(
            "Label delay",
            "Event time from an example's features to its label: how long a model waits to learn.",
            "s",
            *quantiles("forewarn_model_label_delay_seconds", "model", "{{model}} "),
        ),
        graph(
            "Examples learned / s by model and label",
            "Labelled examples the models learned.",
            "cps",
            per_second("forewarn_model_examples_total", "model, label"),
        ),
        graph(
            "Checkpoints and feedback / s",
            "Partition models written to their changelog; feedback corrections received and learned.",
            "cps",
            prom(rate("forewarn_model_checkpoints_total"), "model checkpoints"),
            prom(rate("forewarn_feedback_labels_total"), "feedback corrections"),
            prom(rate("forewarn_feedback_corrections_learned_total"), "corrections learned"),
        ),
    )


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

FINAL_DECISIONS = """
SELECT
    $__timeInterval(event_time) AS time,
    concat(trigger, ' ', if(arm = '', '(no experiment)', arm)) AS series,
    uniqExact(intervention_id) AS decisions
FROM decisions FINAL
WHERE decision IN ('emitted', 'suppressed') AND $__timeFilter(event_time)
GROUP BY time, series
ORDER BY time
"""

OUTCOMES = """
SELECT $__timeInterval(event_time) AS time, outcome, count() AS outcomes
FROM intervention_outcomes
WHERE $__timeFilter(event_time)
GROUP BY time, outcome
ORDER BY time
"""

INTERVENTIONS = """
SELECT $__timeInterval(minute) AS time, trigger, sum(interventions) AS interventions
FROM interventions_per_minute
WHERE $__timeFilter(minute)
GROUP BY time, trigger
ORDER BY time
"""

REVENUE_BY_ARM = """
SELECT
    $__timeInterval(event_time) AS time,
    concat(trigger, ' ', if(arm = '', '(no experiment)', arm)) AS series,
    sum(revenue) AS revenue
FROM intervention_value
WHERE $__timeFilter(event_time)
GROUP BY time, series
ORDER BY time
"""

# The support-load forecast (streams.processes.support_load): per channel, the contacts counted in each
# closed 15-minute slot against the forecast made at least an hour before the slot and the latest one.
SUPPORT_LOAD = """
SELECT slot_start AS time, series, value FROM (
    SELECT slot_start, 'actual' AS series, toFloat64(any(contacts)) AS value
    FROM support_load_actual
    WHERE channel = '{channel}' AND $__timeFilter(slot_start)
    GROUP BY slot_start
    UNION ALL
    SELECT slot_start, 'forecast made 1 h before' AS series, argMin(forecast, horizon_minutes) AS value
    FROM support_load_forecast
    WHERE channel = '{channel}' AND horizon_minutes >= 60 AND $__timeFilter(slot_start)
    GROUP BY slot_start
    UNION ALL
    SELECT slot_start, 'latest forecast' AS series, argMax(forecast, made_at) AS value
    FROM support_load_forecast
    WHERE channel = '{channel}' AND $__timeFilter(slot_start)
    GROUP BY slot_start
)
ORDER BY time
"""
SUPPORT_CHANNELS = ("chat", "phone", "email", "other")


def support_load_panels() -> list[timeseries.Panel]:
    """One panel per support channel: actual contacts per 15 minutes against the forecast."""
    return [
        graph(
            f"Support load, {channel}: actual against forecast",
            f"Contacts on {channel} per 15-minute slot (event time; late ones left out) against the"
            " forecast made at least an hour before the slot and the latest forecast (ahead of now: the"
            " next 24 hours). `forewarn forecast` prints the agents needed per hour.",
            "none",
            SQL(SUPPORT_LOAD.replace("{channel}", channel)),
        )
        for channel in SUPPORT_CHANNELS
    ]


RATES = ("response_rate", "adoption_rate", "complaint_rate", "conversion_rate", "churn_rate")
DIFFERENCES = (
    "conversion_uplift",
    "conversion_uplift_ci95",
    "complaint_difference",
    "complaint_difference_ci95",
    "problem_prevention",
    "churn_difference",
)


def business() -> schema.Dashboard:
    return board(
        "forewarn-business",
        "Forewarn / Business value",
        "The value of proactive interventions by experiment arm, from ClickHouse: each arm against the"
        " holdout arm that got nothing. Over the decisions in the time range; over all of them, the figures"
        " of `forewarn report`.",
        tabular(
            "Value by arm",
            "Per trigger, experiment and arm, intent-to-treat over every final decision (emitted or"
            " suppressed) made in the time range. Response = responded / delivered, adoption = accepted /"
            " emitted; complaints, conversions and revenue within 7 days; churn within 28 days, among the"
            " decisions whose 28 days have passed; automation = resolved without a human / (that +"
            " escalated).",
            SQL(VALUE_BY_ARM, table=True),
            {
                **dict.fromkeys(RATES, "percentunit"),
                "automation_share": "percentunit",
                "revenue_per_decision": "currencyUSD",
            },
        ),
        tabular(
            "Uplift against the holdout arm",
            "Each arm minus its holdout arm, with the half-width of the 95% confidence interval (an"
            " interval that holds 0 shows no effect yet). Problem prevention: 1 - complaint rate / the"
            " holdout's.",
            SQL(UPLIFT_VS_HOLDOUT, table=True),
            {**dict.fromkeys(DIFFERENCES, "percentunit"), "revenue_uplift_per_decision": "currencyUSD"},
        ),
        graph(
            "Final decisions by trigger and arm",
            "Emitted or suppressed decisions (the last one of each intervention), by when the situation"
            " arose.",
            "none",
            SQL(FINAL_DECISIONS),
            bars=True,
        ),
        graph(
            "Outcomes by outcome",
            "Outcomes the notifier reported, by when they happened.",
            "none",
            SQL(OUTCOMES),
            bars=True,
        ),
        graph(
            "Interventions by trigger",
            "Interventions sent, per minute of their event time (interventions_per_minute).",
            "none",
            SQL(INTERVENTIONS),
            bars=True,
        ),
        graph(
            "Revenue within 7 days by arm",
            "Revenue of orders completed within 7 days of a decision, by the decision's time and arm.",
            "currencyUSD",
            SQL(REVENUE_BY_ARM),
            bars=True,
        ),
        *support_load_panels(),
        time_from="now-30d",
        refresh="5m",
    )


# --- operations: cross-department response times (the views of sinks/schema/0011_department_updates.sql)

AUTOMATION_SHARE = """
SELECT toDateTime(week) AS time, sum(automated) / sum(cases) AS automation_share
FROM automation_share
WHERE $__timeFilter(week)
GROUP BY time
ORDER BY time
"""

AUTOMATION_BY_KIND = """
SELECT toDateTime(week) AS time, kind, sum(automated) / sum(cases) AS share
FROM automation_share
WHERE $__timeFilter(week)
GROUP BY time, kind
ORDER BY time
"""

TICKETS_BY_POINT = """
SELECT
    week,
    if(service_point_id = '', '(no point yet)', service_point_id) AS service_point,
    tickets,
    automatic_share,
    responded_tickets,
    first_response_p50_hours,
    first_response_p90_hours,
    resolved_tickets,
    resolution_p50_hours,
    resolution_p90_hours,
    reopen_rate
FROM department_weekly_tickets
WHERE $__timeFilter(week)
ORDER BY week DESC, service_point
"""

RESPONSE_TIMES = """
SELECT
    toDateTime(week) AS time,
    quantileExactIf(0.5)(first_response_hours, responded) AS first_response_p50,
    quantileExactIf(0.9)(first_response_hours, responded) AS first_response_p90,
    quantileExactIf(0.5)(resolution_hours, resolution_hours IS NOT NULL) AS resolution_p50,
    quantileExactIf(0.9)(resolution_hours, resolution_hours IS NOT NULL) AS resolution_p90
FROM ticket_response
WHERE $__timeFilter(week)
GROUP BY time
ORDER BY time
"""

REOPEN_RATE = """
SELECT toDateTime(week) AS time, service_point_id, reopen_rate
FROM department_weekly_tickets
WHERE $__timeFilter(week) AND reopen_rate IS NOT NULL
ORDER BY time
"""

DISPATCH = """
SELECT
    toDateTime(week) AS time, sum(dispatched_automatically) AS automatic, sum(dispatched_manually) AS manual
FROM department_weekly_tickets
WHERE $__timeFilter(week)
GROUP BY time
ORDER BY time
"""

FEEDBACK_BY_TEAM = """
SELECT
    week,
    team,
    feedback,
    acknowledged_feedback,
    acknowledged_within_3d_share,
    first_response_p50_hours,
    first_response_p90_hours
FROM department_weekly_feedback
WHERE $__timeFilter(week)
ORDER BY week DESC, team
"""

ACKNOWLEDGED = """
SELECT toDateTime(week) AS time, team, acknowledged_within_3d_share
FROM department_weekly_feedback
WHERE $__timeFilter(week)
ORDER BY time
"""


def operations() -> schema.Dashboard:
    hours = {
        name: "h"
        for name in (
            "first_response_p50_hours",
            "first_response_p90_hours",
            "resolution_p50_hours",
            "resolution_p90_hours",
        )
    }
    shares = dict.fromkeys(("automatic_share", "reopen_rate", "acknowledged_within_3d_share"), "percentunit")
    return board(
        "forewarn-operations",
        "Forewarn / Operations",
        "Cross-department response times per service point, team and week (of the ticket's or feedback's"
        " creation, Monday to Sunday UTC), and the end-to-end automation share: the figures of `forewarn"
        " report` (docs/operations.md).",
        dashboard.Row("Automation"),
        value(
            "End-to-end automation share",
            "Cases handled without a person over all cases, the latest week: interventions resolved by"
            " the automated agent and never escalated, tickets dispatched automatically, orders taken in"
            " the chat; over concluded interventions, all tickets, all order requests decided.",
            "percentunit",
            SQL(AUTOMATION_SHARE),
        ),
        graph(
            "Automation share by kind of case",
            "Per week: interventions, tickets, orders.",
            "percentunit",
            SQL(AUTOMATION_BY_KIND),
            width=18,
        ),
        dashboard.Row("Service desk"),
        tabular(
            "Tickets per service point and week",
            "Time to first response (the first update, whatever its status) and to resolution (the latest"
            " `resolved` of tickets resolved now), exact quantiles in hours; the reopen rate among tickets"
            " ever resolved; the share dispatched automatically. A manual ticket counts at the point the"
            " desk's updates name.",
            SQL(TICKETS_BY_POINT, table=True),
            {**hours, **shares},
        ),
        graph(
            "Response and resolution times",
            "Per week of the tickets' creation, over every service point: p50 and p90, hours.",
            "h",
            SQL(RESPONSE_TIMES),
        ),
        graph(
            "Reopen rate by service point",
            "Tickets reopened among those ever resolved, per week of creation.",
            "percentunit",
            SQL(REOPEN_RATE),
        ),
        graph(
            "Dispatch: automatic against manual",
            "Tickets dispatched automatically to the nearest open point, and left for manual dispatch.",
            "none",
            SQL(DISPATCH),
            bars=True,
            width=24,
        ),
        dashboard.Row("Product and marketing"),
        tabular(
            "Feedback per team and week",
            "Feedback routed to each team, answered at all, within 3 days, and the time to the team's first"
            " update (hours).",
            SQL(FEEDBACK_BY_TEAM, table=True),
            {**hours, **shares},
        ),
        graph(
            "Feedback acknowledged within 3 days",
            "Per team and week of the feedback: the team's first update within 72 hours, among the feedback"
            " routed to it.",
            "percentunit",
            SQL(ACKNOWLEDGED),
            width=24,
        ),
        time_from="now-90d",
        refresh="5m",
    )


def dashboards() -> dict[str, schema.Dashboard]:
    """File name -> Grafana dashboard model, for every dashboard."""
    return {
        f"{build.__name__}.json": build() for build in (pipeline, proactive, models, business, operations)
    }


def render(model: schema.Dashboard) -> str:
    """The JSON file of a dashboard model."""
    return JSONEncoder(indent=2, ensure_ascii=False).encode(model) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, model in dashboards().items():
        (OUT / name).write_text(render(model), encoding="utf-8")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()

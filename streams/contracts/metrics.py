"""Prometheus metrics: every metric Forewarn exports is defined here, once.

Labels are bounded sets (topics, event types, dead-letter reasons, triggers, tables), never ids.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_IN = Counter(
    "forewarn_events_total", "Valid events consumed, by source topic and event type.", ["topic", "event_type"]
)
DEAD_LETTERS = Counter(
    "forewarn_dead_letters_total", "Messages rejected to the dead-letter topic.", ["reason"]
)
DEAD_LETTER_SEND_FAILURES = Counter(
    "forewarn_dead_letter_send_failures_total",
    "Dead letters the broker did not take at the first try (each is tried again until it does).",
)
ACKNOWLEDGED_SEND_FAILURES = Counter(
    "forewarn_acknowledged_send_failures_total",
    "Tries of a batch's decisions and interventions, or of ingest's envelopes, the broker did not take"
    " (each is tried again).",
)
DEAD_LETTERS_UNSENT = Counter(
    "forewarn_dead_letters_unsent_total",
    "Dead letters of changelog records refused at recovery that were not sent: too many waited to be sent.",
    ["reason"],
)
INTERVENTIONS = Counter("forewarn_interventions_total", "Interventions emitted, by trigger.", ["trigger"])
INTERVENTION_LATENCY = Histogram(
    "forewarn_intervention_latency_seconds",
    "From the intervention's event time to its emission.",
    ["trigger"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
EVENT_PROCESSING = Histogram(
    "forewarn_event_processing_seconds",
    "From an event's event time to the end of its processing by the per-user agent.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DECISIONS = Counter(
    "forewarn_decisions_total",
    "Contact-policy decisions, by trigger, decision (emitted, deferred, suppressed, shadow) and reason.",
    ["trigger", "decision", "reason"],
)
POLICY_RELOADS = Counter(
    "forewarn_policy_reloads",
    "Policy files read again (SIGHUP, or the file changed) and put in force (applied) or refused.",
    ["result"],
)
OUTCOMES = Counter(
    "forewarn_outcomes_total", "Intervention outcomes reported by the notifier, by outcome.", ["outcome"]
)
TICKS_SENT = Counter("forewarn_timer_ticks_total", "Timer ticks the sweep sent to silent users.")
SINK_BATCH_ROWS = Histogram(
    "forewarn_sink_batch_rows",
    "Rows per ClickHouse insert.",
    ["table"],
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000),
)
SINK_INSERT_SECONDS = Histogram(
    "forewarn_sink_insert_seconds",
    "Duration of successful ClickHouse inserts.",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_INSERT_FAILURES = Counter("forewarn_sink_insert_failures_total", "Failed ClickHouse inserts.", ["table"])
SINK_DUPLICATES = Counter(
    "forewarn_sink_duplicates_total",
    "Rows dropped by the sink because their id was already stored (upstream re-processing).",
    ["table"],
)
SINK_ROWS = Counter("forewarn_sink_rows_total", "Rows inserted into ClickHouse.", ["table"])
CONSUMER_LAG = Gauge(
    "forewarn_consumer_lag_messages",
    "Messages between the consumer's position and the partition's high watermark.",
    ["group", "topic", "partition"],
)
# The label sets replace_series set last, by gauge and owner: what to remove when a partition goes.
_REPORTED: dict[tuple[str, str], set[tuple[str, ...]]] = {}


def replace_series(gauge: Gauge, owner: str, values: Mapping[tuple[str, ...], float]) -> None:
    """Set ``gauge``'s series to ``values`` (label values -> value) and remove those ``owner`` set
    before and not now. Per-partition gauges use it: a partition lost in a rebalance is reported by
    the worker that holds it now, and a stale copy left here would count it twice in a sum.

    >>> gauge = Gauge("doc_partition_gauge", "An example.", ["partition"])
    >>> replace_series(gauge, "doc", {("0",): 5, ("1",): 0})
    >>> replace_series(gauge, "doc", {("1",): 2})  # partition 0 went to another worker
    >>> [(s.labels["partition"], s.value) for s in gauge.collect()[0].samples]
    [('1', 2.0)]
    """
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
    key = (gauge._name, owner)
    for labels in _REPORTED.get(key, set()) - values.keys():
        gauge.remove(*labels)
    _REPORTED[key] = set(values)


def report_lag(group: str, lags: Mapping[tuple[str, int], int]) -> None:
    """Set ``group``'s consumer lag to ``lags`` ((topic, partition) -> messages behind), removing the
    partitions it no longer consumes (:func:`replace_series`).

    >>> report_lag("doc", {("events", 0): 5, ("events", 1): 0})
    >>> report_lag("doc", {("events", 1): 2})
    >>> [(s.labels["partition"], s.value) for s in CONSUMER_LAG.collect()[0].samples
    ...  if s.labels["group"] == "doc"]
    [('1', 2.0)]
    """
    replace_series(
        CONSUMER_LAG, group, {(group, topic, str(partition)): lag for (topic, partition), lag in lags.items()}
    )


MODEL_EXAMPLES = Counter(
    "forewarn_model_examples_total", "Examples the models learned, by model and label.", ["model", "label"]
)
MODEL_LABEL_DELAY = Histogram(
    "forewarn_model_label_delay_seconds",
    "Event time from an example's features to its label, by model.",
    ["model"],
    buckets=(1, 10, 60, 300, 1800, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 90 * 86400),
)
MODEL_QUALITY = Gauge(
    "forewarn_model_quality",
    "Progressive-validation quality over the last 5000 examples of a partition's model: roc_auc and"
    " log_loss (churn), accuracy and macro_f1 (intent).",
    ["model", "metric", "partition"],
)
MODEL_DRIFTS = Counter(
    "forewarn_model_drifts_total", "Drifts ADWIN detected in a model's per-example loss.", ["model"]
)
MODEL_CHECKPOINTS = Counter(
    "forewarn_model_checkpoints_total", "Partition models written to their changelog.", ["partition"]
)
CHANGELOG_REFUSED = Counter(
    "forewarn_changelog_refused_total",
    "Table changelog records refused at recovery, not applied: a model checkpoint that is unsigned, or"
    " whose signature does not verify, or a key or value that does not decode.",
    ["table", "reason"],
)
SCORES_PUBLISHED = Counter("forewarn_scores_published_total", "User scores published.")

# The business processes: tickets, orders, feedback, hot issues, CRM sync, erasure.
TICKETS = Counter(
    "forewarn_tickets_total",
    "Service tickets created, by dispatch: assigned, or the reason for manual dispatch.",
    ["dispatch"],
)
ORDERS = Counter(
    "forewarn_orders_total",
    "Order requests decided: accepted, or the reason they were refused.",
    ["result"],
)
PROCESS_DUPLICATES = Counter(
    "forewarn_process_duplicates_total",
    "Repair and order requests, ticket and feedback updates whose id was already handled (nothing emitted"
    " again).",
    ["source"],
)
DEPARTMENT_UPDATES = Counter(
    "forewarn_department_updates_total",
    "Ticket and feedback updates from the service desk and the teams taken in, by source and status"
    " (refused ones are dead letters, repeated ones process duplicates).",
    ["source", "status"],
)
FEEDBACK_TAGGED = Counter("forewarn_feedback_tagged_total", "Feedback comments tagged, by tag.", ["tag"])
FEEDBACK_LABELS = Counter("forewarn_feedback_labels_total", "Feedback corrections received.")
FEEDBACK_CORRECTIONS_LEARNED = Counter(
    "forewarn_feedback_corrections_learned_total",
    "Corrections learned by partition taggers (each correction once per partition).",
)
SUPPORT_QUESTIONS = Counter(
    "forewarn_support_questions_total", "Support questions counted, by product category.", ["category"]
)
HOT_ISSUES = Counter(
    "forewarn_hot_issues_total", "Hot-issue alerts raised, by product category.", ["category"]
)
LAUNCH_FAQ_FORECASTS = Counter(
    "forewarn_launch_faq_forecasts_total",
    "FAQ forecasts of launches sent (launch_faq_forecasts), by product category.",
    ["category"],
)
# The support-load forecast (streams.processes.support_load).
SUPPORT_CONTACTS = Counter(
    "forewarn_support_contacts_total",
    "Support contacts counted for the load forecast, by channel and how: counted, late (their slot was"
    " closed: left out) or repeat (a later message of a chat already counted).",
    ["channel", "how"],
)
SUPPORT_LOAD_NEXT_HOUR = Gauge(
    "forewarn_support_load_next_hour_forecast",
    "Contacts forecast for the next hour, by channel (set at each refresh, every 15 minutes of event time).",
    ["channel"],
)
SUPPORT_LOAD_CAPACITY = Gauge(
    "forewarn_support_load_capacity",
    "Contacts per hour the agents on shift take in the next hour, by channel ([staffing] of the policy).",
    ["channel"],
)
SUPPORT_LOAD_SLOTS_SKIPPED = Counter(
    "forewarn_support_load_slots_skipped_total",
    "15-minute slots not learned: more than 6 hours from any contact (an outage of the input).",
)
CAMPAIGNS = Counter("forewarn_campaigns_total", "Campaigns received (new or changed) for the load forecast.")
CRM_SYNCED = Counter("forewarn_crm_sync_total", "Health and tag records sent to the CRM.")
STATE_WRITES = Counter(
    "forewarn_state_writes_total",
    "Users' state records sent to the changelog (once per changed user per offset commit, not per event).",
)
ENVELOPES_SENT = Counter(
    "forewarn_envelopes_total",
    "Envelopes sent to the events topic: the validated events of one ingest batch for one partition.",
)
ENVELOPE_EVENTS = Histogram(
    "forewarn_envelope_events",
    "Events per envelope sent to the events topic.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
DUPLICATE_EVENTS = Counter(
    "forewarn_duplicate_events_total",
    "Events delivered again (a replay after a crash or rebalance, a producer's retry) and skipped: their"
    " user had applied them already.",
)
ERASED_EVENTS_SKIPPED = Counter(
    "forewarn_erased_events_skipped_total",
    "Events of an erased user, timed before the erasure, that reached the worker after it (not taken in).",
)
ERASURES_REQUESTED = Counter(
    "forewarn_erasure_requests_total", "Erasure requests carried out on the worker's state."
)
USERS_EVICTED = Counter(
    "forewarn_users_evicted_total",
    "Users idle past the idle horizon, by how: their state deleted (with a tombstone), or trimmed to the"
    " facts no window ends (preferences, subscriptions, devices, CRM attributes).",
    ["how"],
)
EVICTION_KINDS = ("deleted", "trimmed")
for _how in EVICTION_KINDS:  # both series from the start: a rate over a counter not yet incremented
    USERS_EVICTED.labels(_how)


API_REQUESTS = Counter(
    "forewarn_api_requests_total",
    "CRM/ERP API calls answered (and audited) by this worker, by route template and HTTP status.",
    ["route", "status"],
)
API_FORWARDED = Counter(
    "forewarn_api_forwarded_total",
    "API reads this worker forwarded to the worker holding the user's partition (both audit them),"
    " by route template.",
    ["route"],
)

# Privacy (sinks.erasure): erasures carried out in ClickHouse. Labels are results and tables, never ids.
ERASURES = Counter(
    "forewarn_erasures_total",
    "Erasures at the ClickHouse sink, by result: done, failed (an attempt, retried) or unreadable"
    " (the message was dead-lettered).",
    ["result"],
)
ERASURE_ROWS_DELETED = Counter(
    "forewarn_erasure_rows_deleted_total", "Rows deleted from ClickHouse by erasures, by table.", ["table"]
)
ERASURES_PENDING = Gauge(
    "forewarn_erasures_pending", "Erasures the sink has read and not yet done (waiting for rows in flight)."
)
ERASED_ROWS_DROPPED = Counter(
    "forewarn_sink_erased_rows_dropped_total",
    "Rows of an erased user, timed up to the erasure, that reached the sink after it and were not stored.",
    ["table"],
)


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0: do not serve)."""
    if port:
        start_http_server(port)


# Scale-out (docs/operations.md "Scaling out"): which partitions this worker holds, active or as a
# standby copy.
ASSIGNED_PARTITIONS = Gauge(
    "forewarn_assigned_partitions",
    "Partitions this worker holds: 1 per topic partition, by role (active: consumed and served; standby:"
    " a table's changelog kept warm for a takeover). Series of partitions it lost are removed.",
    ["topic", "partition", "role"],
)

# The ClickHouse sink's memory while ClickHouse is away: rows taken from Kafka, not yet stored.
SINK_PENDING_ROWS = Gauge(
    "forewarn_sink_pending_rows",
    "Rows the ClickHouse sink holds, taken from Kafka and not yet stored: at most twice"
    " FOREWARN_SINK_BATCH_ROWS (a batch being stored, the next being gathered), however long ClickHouse"
    " is away.",
)

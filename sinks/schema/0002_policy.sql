-- Forewarn schema, version 2: contact-policy decisions, intervention outcomes, and the value metrics
-- of proactive interventions (treatment arm against holdout arm), computed by ClickHouse.
--
-- Every statement is re-runnable (IF NOT EXISTS), like 0001. Comment lines are dropped before the
-- statements are sent, so the definitions below are documented here and only here.

-- One row per decision of the contact policy (the `decisions` topic). The natural id is
-- (intervention_id, decision): a deferred intervention has a `deferred` row and later an `emitted` or
-- `suppressed` one (its FINAL decision; at most one per intervention). A trigger deployed in shadow
-- (docs/policy.md) records `shadow` rows instead, final at once, `reason` the decision it would have
-- had; the value views below read emitted and suppressed rows only (sinks/report.py reads these).
CREATE TABLE IF NOT EXISTS decisions
(
    intervention_id UUID,
    decision        LowCardinality(String) COMMENT 'emitted, suppressed, deferred or shadow',
    reason          LowCardinality(String) COMMENT 'empty when emitted; holdout, opted_out, frequency_cap, ...',
    detail          String,
    trigger         LowCardinality(String),
    action          LowCardinality(String),
    channel         LowCardinality(String),
    priority        Int32,
    experiment      LowCardinality(String) COMMENT 'empty when the trigger is in no experiment',
    arm             LowCardinality(String) COMMENT 'empty when in no experiment; holdout gets nothing',
    offer           String COMMENT 'JSON object, empty when none',
    user_id         String,
    event_time      DateTime64(3, 'UTC') COMMENT 'when the situation arose',
    decided_at      DateTime64(3, 'UTC'),
    source_event_id String,
    order_id        String COMMENT 'the order the intervention is about, empty if none',
    kafka_partition UInt16,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
-- Read per trigger, experiment and arm over time (the value views); the natural id closes the key so
-- that ReplacingMergeTree collapses re-processed copies of a decision.
ORDER BY (trigger, experiment, arm, event_time, intervention_id, decision)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_decisions_mv TO sink_offsets AS
SELECT 'decisions' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM decisions GROUP BY kafka_partition;

-- What the notifier reported back (events with source 'outcomes'), typed, sorted by intervention for the
-- joins by id. Filled on insert into `events`: outcome events stored before this migration are not in
-- it. An unreadable intervention id becomes the nil UUID (it joins nothing but stays countable).
-- Duplicates of one outcome at one instant collapse; the views only ask whether an outcome happened.
CREATE TABLE IF NOT EXISTS intervention_outcomes
(
    intervention_id UUID,
    outcome         LowCardinality(String) COMMENT 'delivered, opened, clicked, accepted, converted, dismissed, escalated, resolved',
    event_time      DateTime64(3, 'UTC'),
    user_id         String,
    channel         LowCardinality(String),
    revenue         Float64 COMMENT 'converted only, 0 when absent',
    event_id        String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (intervention_id, outcome, event_time)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS intervention_outcomes_mv TO intervention_outcomes AS
SELECT
    toUUIDOrZero(JSONExtractString(attrs, 'intervention_id')) AS intervention_id,
    event_type AS outcome,
    event_time,
    user_id,
    JSONExtractString(attrs, 'channel') AS channel,
    JSONExtractFloat(attrs, 'revenue') AS revenue,
    event_id
FROM events
WHERE source = 'outcomes';

-- intervention_value: one row per FINAL decision (emitted or suppressed; deferred rows are skipped, and
-- should an intervention have both an emitted and a suppressed row, e.g. re-processed after a crash
-- under a changed frequency count, the emitted one counts: it reached the notifier). t = event_time
-- of the decision, when the situation arose. Every window is half-open: it starts strictly after t
-- (what happened at t cannot have been caused by the intervention) and ends inclusively, so an event
-- at exactly t + 7 days counts and one a millisecond later does not.
--
--   delivered, responded, accepted, resolved_automatically, escalated: from intervention_outcomes by
--     intervention_id, any time, and only for emitted decisions (a holdout or suppressed decision has
--     no outcomes, whatever a notifier reported). responded = opened, clicked, accepted or converted.
--     resolved_automatically = resolved and never escalated; escalated = handed to a human agent.
--   complained: a clickstream support_contact with attrs.reason 'delivery' by the same user in
--     (t, t + 7 days]; when the decision has an order_id, only a contact about that order or about no
--     order counts.
--   converted, revenue: an order_completed by the same user in (t, t + 7 days]; revenue is the sum of
--     those orders' attrs.amount (0 when absent), 0 when none.
--   churned: no clickstream event at all by the user in (t, t + 28 days], or a subscription_updated
--     with attrs.status 'cancelled' in that window.
--   churn_observable: the 28-day window has passed, t + 28 days <= the latest event_time in `events`;
--     churn rates are read among these only.
--
-- Reads: decisions FINAL; intervention_outcomes by its key (intervention_id IN the emitted ones);
-- events only for the users that have decisions and only in [first t, last t + 28 days], which the
-- primary key (user_id, event_time) prunes to. The sparse signals (delivery complaints, orders,
-- cancellations) are joined on user_id with the window as a join condition; plain activity, dense, is
-- reduced by an ASOF join to each decision's next clickstream event. The latest event_time comes from
-- the parts' min/max index (event_time is the partition key), not from a scan.
CREATE VIEW IF NOT EXISTS intervention_value AS
WITH
    final_decisions AS
    (
        SELECT intervention_id, trigger, experiment, arm, decision, reason, user_id, event_time, order_id
        FROM decisions FINAL
        WHERE decision IN ('emitted', 'suppressed')
        ORDER BY intervention_id, decision = 'emitted' DESC, decided_at DESC
        LIMIT 1 BY intervention_id
    ),
    outcome_flags AS
    (
        SELECT
            intervention_id,
            max(outcome = 'delivered') AS delivered,
            max(outcome IN ('opened', 'clicked', 'accepted', 'converted')) AS responded,
            max(outcome = 'accepted') AS accepted,
            max(outcome = 'resolved') AS resolved,
            max(outcome = 'escalated') AS escalated
        FROM intervention_outcomes
        WHERE intervention_id IN (SELECT intervention_id FROM decisions WHERE decision = 'emitted')
        GROUP BY intervention_id
    ),
    signals AS
    (
        SELECT
            user_id,
            event_time,
            event_type,
            order_id,
            if(event_type = 'order_completed', JSONExtractFloat(attrs, 'amount'), 0) AS amount
        FROM events FINAL
        WHERE user_id IN (SELECT user_id FROM decisions)
            AND event_time > (SELECT min(event_time) FROM decisions)
            AND event_time <= (SELECT max(event_time) FROM decisions) + INTERVAL 28 DAY
            AND ((source = 'clickstream' AND event_type = 'support_contact'
                    AND JSONExtractString(attrs, 'reason') = 'delivery')
                OR (source = 'clickstream' AND event_type = 'order_completed')
                OR (source = 'subscriptions' AND event_type = 'subscription_updated'
                    AND JSONExtractString(attrs, 'status') = 'cancelled'))
    ),
    windows AS
    (
        SELECT
            d.intervention_id AS intervention_id,
            max(s.event_type = 'support_contact' AND s.event_time <= d.event_time + INTERVAL 7 DAY
                AND (d.order_id = '' OR s.order_id = '' OR s.order_id = d.order_id)) AS complained,
            max(s.event_type = 'order_completed' AND s.event_time <= d.event_time + INTERVAL 7 DAY)
                AS converted,
            sumIf(s.amount, s.event_type = 'order_completed' AND s.event_time <= d.event_time + INTERVAL 7 DAY)
                AS revenue,
            max(s.event_type = 'subscription_updated') AS cancelled
        FROM final_decisions AS d
        INNER JOIN signals AS s
            ON s.user_id = d.user_id AND s.event_time > d.event_time
            AND s.event_time <= d.event_time + INTERVAL 28 DAY
        GROUP BY d.intervention_id
    ),
    activity AS
    (
        SELECT user_id, event_time, 1 AS found
        FROM events
        WHERE user_id IN (SELECT user_id FROM decisions)
            AND event_time > (SELECT min(event_time) FROM decisions)
            AND event_time <= (SELECT max(event_time) FROM decisions) + INTERVAL 28 DAY
            AND source = 'clickstream'
    ),
    next_activity AS
    (
        SELECT d.intervention_id AS intervention_id, a.found AS found, a.event_time AS active_at
        FROM final_decisions AS d
        ASOF LEFT JOIN activity AS a ON a.user_id = d.user_id AND a.event_time > d.event_time
    )
SELECT
    d.intervention_id AS intervention_id,
    d.trigger AS trigger,
    d.experiment AS experiment,
    d.arm AS arm,
    d.decision AS decision,
    d.reason AS reason,
    d.user_id AS user_id,
    d.event_time AS event_time,
    d.order_id AS order_id,
    toUInt8(d.decision = 'emitted' AND o.delivered) AS delivered,
    toUInt8(d.decision = 'emitted' AND o.responded) AS responded,
    toUInt8(d.decision = 'emitted' AND o.accepted) AS accepted,
    toUInt8(d.decision = 'emitted' AND o.resolved AND NOT o.escalated) AS resolved_automatically,
    toUInt8(d.decision = 'emitted' AND o.escalated) AS escalated,
    toUInt8(w.complained) AS complained,
    toUInt8(w.converted) AS converted,
    w.revenue AS revenue,
    toUInt8(NOT (n.found = 1 AND n.active_at <= d.event_time + INTERVAL 28 DAY) OR w.cancelled) AS churned,
    -- ifNull: a scalar subquery is Nullable (it could return no row).
    toUInt8(ifNull(d.event_time + INTERVAL 28 DAY <= (SELECT max(event_time) FROM events), 0)) AS churn_observable
FROM final_decisions AS d
LEFT JOIN outcome_flags AS o ON o.intervention_id = d.intervention_id
LEFT JOIN windows AS w ON w.intervention_id = d.intervention_id
LEFT JOIN next_activity AS n ON n.intervention_id = d.intervention_id;

-- value_by_arm: intervention_value per trigger, experiment and arm. Rates are intent-to-treat: their
-- denominator is every final decision of the arm (suppressed ones included, e.g. by a frequency cap),
-- because only the arm assignment is random.
-- The columns are qualified (v.) because each sum takes its column's name as alias.
--   decisions, users (distinct), emitted; delivered, responded, accepted, resolved_automatically,
--   escalated, complained, converted: decisions with that flag; revenue and revenue_sq: sum and sum of
--   squares of the per-decision revenue (a mean and its variance); churn_observable: decisions whose
--   28-day window has passed, churned: those among them that churned.
CREATE VIEW IF NOT EXISTS value_by_arm AS
SELECT
    v.trigger AS trigger,
    v.experiment AS experiment,
    v.arm AS arm,
    count() AS decisions,
    uniqExact(v.user_id) AS users,
    countIf(v.decision = 'emitted') AS emitted,
    sum(v.delivered) AS delivered,
    sum(v.responded) AS responded,
    sum(v.accepted) AS accepted,
    sum(v.resolved_automatically) AS resolved_automatically,
    sum(v.escalated) AS escalated,
    sum(v.complained) AS complained,
    sum(v.converted) AS converted,
    sum(v.revenue) AS revenue,
    sum(v.revenue * v.revenue) AS revenue_sq,
    sum(v.churn_observable) AS churn_observable,
    countIf(v.churn_observable = 1 AND v.churned = 1) AS churned
FROM intervention_value AS v
GROUP BY trigger, experiment, arm;

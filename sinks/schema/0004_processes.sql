-- Forewarn schema, version 4: the processes Forewarn starts and the data it feeds back:
-- service tickets, order commands and rejections, tagged feedback, support questions and hot-issue
-- alerts, and the audit of the CRM/ERP API.
--
-- Every statement is re-runnable (IF NOT EXISTS), like 0001. user_id columns hold pseudonyms
-- (streams.contracts.privacy): the sink replaces the id before a row is stored. Each raw table
-- records where its rows came from (kafka_partition, kafka_offset) and feeds sink_offsets, as in 0001.

-- One row per service ticket (the `tickets` topic), dispatched or flagged for manual dispatch.
CREATE TABLE IF NOT EXISTS tickets
(
    ticket_id        UUID,
    request_id       String,
    user_id          String,
    created_at       DateTime64(3, 'UTC') COMMENT 'event time of the repair request',
    decided_at       DateTime64(3, 'UTC'),
    device_id        String,
    device_category  LowCardinality(String) COMMENT 'empty for an unknown device',
    device_model     String,
    prior_tickets    UInt16 COMMENT 'earlier tickets of the device',
    fault            String,
    latitude         Float64,
    longitude        Float64,
    dispatch         LowCardinality(String) COMMENT 'assigned or manual',
    service_point_id LowCardinality(String) COMMENT 'empty when manual',
    distance_km      Nullable(Float64),
    manual_reason    LowCardinality(String),
    ticket           String COMMENT 'the whole ticket as sent, JSON',
    kafka_partition  UInt16,
    kafka_offset     UInt64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
-- Read per service point over time (its queue and load; manual tickets are service_point_id = '').
ORDER BY (service_point_id, created_at, ticket_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_tickets_mv TO sink_offsets AS
SELECT 'tickets' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM tickets GROUP BY kafka_partition;

-- Orders from conversation: the commands sent to the order system and the requests refused. Two
-- tables, one per topic, because the sink's insert-deduplication token is per table and offset range.
CREATE TABLE IF NOT EXISTS order_commands
(
    command_id      UUID,
    request_id      String,
    user_id         String,
    requested_at    DateTime64(3, 'UTC'),
    decided_at      DateTime64(3, 'UTC'),
    items           UInt16 COMMENT 'order lines',
    units           UInt32,
    total           Float64,
    stock_checked   UInt8 COMMENT 'every line was checked against a stock level',
    command         String COMMENT 'the whole command as sent, JSON',
    kafka_partition UInt16,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(requested_at)
ORDER BY (requested_at, command_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_order_commands_mv TO sink_offsets AS
SELECT 'order_commands' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM order_commands GROUP BY kafka_partition;

CREATE TABLE IF NOT EXISTS order_rejections
(
    request_id      String,
    user_id         String,
    requested_at    DateTime64(3, 'UTC'),
    decided_at      DateTime64(3, 'UTC'),
    reason          LowCardinality(String) COMMENT 'the first problem',
    problems        String COMMENT 'every problem, JSON',
    kafka_partition UInt16,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(requested_at)
-- Read by reason over time (why orders from the chat fail).
ORDER BY (reason, requested_at, user_id, request_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_order_rejections_mv TO sink_offsets AS
SELECT 'order_rejections' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM order_rejections GROUP BY kafka_partition;

-- Free-text feedback with its tags (the `feedback_tagged` topic), for product and marketing.
CREATE TABLE IF NOT EXISTS feedback_tags
(
    feedback_id     String,
    user_id         String,
    product_id      String,
    event_time      DateTime64(3, 'UTC'),
    tagged_at       DateTime64(3, 'UTC'),
    language        LowCardinality(String),
    tags            Array(LowCardinality(String)),
    top_tag         LowCardinality(String),
    confidence      Float32,
    teams           Array(LowCardinality(String)),
    sentiment       Float32 COMMENT '-1 (negative) to 1 (positive)',
    sentiment_label LowCardinality(String),
    csat            Nullable(Float32) COMMENT 'the score given with the feedback, 1-5',
    text            String,
    kafka_partition UInt16,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
-- Read by tag over time ("what do customers say about pricing this week"); per team with has(teams, ..).
ORDER BY (top_tag, event_time, feedback_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_feedback_tags_mv TO sink_offsets AS
SELECT 'feedback_tags' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM feedback_tags GROUP BY kafka_partition;

-- Support questions about products, with the topic and normalised question hot-issue detection used.
CREATE TABLE IF NOT EXISTS support_questions
(
    question_id     String,
    user_id         String,
    product_id      String,
    category        LowCardinality(String),
    topic           String,
    question        String COMMENT 'normalised text: how questions are counted',
    event_time      DateTime64(3, 'UTC'),
    kafka_partition UInt16,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
-- Read per product over a recent window (rising questions).
ORDER BY (product_id, event_time, question_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_support_questions_mv TO sink_offsets AS
SELECT 'support_questions' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM support_questions GROUP BY kafka_partition;

-- The top rising questions per product: the last day's count against the daily average of the week
-- before it, add-one smoothed so that a new question ranks by its count. Relative to the newest
-- question stored, not the clock, so a replay reads the same.
CREATE VIEW IF NOT EXISTS rising_questions AS
WITH (SELECT max(event_time) FROM support_questions) AS newest
SELECT
    product_id,
    question,
    any(topic) AS topic,
    countIf(event_time > newest - INTERVAL 1 DAY) AS last_day,
    countIf(event_time <= newest - INTERVAL 1 DAY) / 7 AS daily_before,
    (last_day + 1) / (daily_before + 1) AS rise
FROM support_questions FINAL
WHERE event_time > newest - INTERVAL 8 DAY
GROUP BY product_id, question
ORDER BY product_id, rise DESC, last_day DESC, question;

-- Alerts for support topics surging on a product (the `hot_issues` topic); no user data.
CREATE TABLE IF NOT EXISTS hot_issues
(
    alert_id          UUID,
    product_id        String,
    category          LowCardinality(String),
    topic             String,
    observed          Float64 COMMENT 'questions in the short window',
    expected          Float64 COMMENT 'what the baseline (and launch prior) predicts for it',
    statistic         Float64,
    launch_prior_used UInt8,
    detected_at       DateTime64(3, 'UTC') COMMENT 'event time',
    decided_at        DateTime64(3, 'UTC'),
    alert             String COMMENT 'the whole alert, JSON (top questions)',
    kafka_partition   UInt16,
    kafka_offset      UInt64,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(detected_at)
ORDER BY (product_id, detected_at, alert_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_hot_issues_mv TO sink_offsets AS
SELECT 'hot_issues' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM hot_issues GROUP BY kafka_partition;

-- Every call of the CRM/ERP API (the `api_audit` topic): who, what, when, result.
CREATE TABLE IF NOT EXISTS api_audit
(
    audit_id        UUID,
    at              DateTime64(3, 'UTC'),
    caller          LowCardinality(String) COMMENT 'the token name; empty when unauthenticated',
    method          LowCardinality(String),
    route           LowCardinality(String) COMMENT 'the route template, never the raw path',
    user_id         String COMMENT 'the subject of the call',
    scope           LowCardinality(String) COMMENT 'the scope the route requires',
    status          UInt16,
    result          LowCardinality(String),
    detail          String,
    kafka_partition UInt16,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
-- Read per caller over time (what did this integration do), and per result (refusals).
ORDER BY (caller, at, audit_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_api_audit_mv TO sink_offsets AS
SELECT 'api_audit' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM api_audit GROUP BY kafka_partition;

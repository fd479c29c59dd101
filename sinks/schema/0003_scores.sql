-- Forewarn schema, version 3: users' scores from the online intent and churn models (the `user_scores`
-- topic): every published score (history), and the latest per user.
--
-- Every statement is re-runnable (IF NOT EXISTS), like 0001. Comment lines are dropped before the
-- statements are sent, so the definitions below are documented here and only here.

-- One row per published score of a user: published when a probability moved by the policy's
-- `publish_delta` or the satisfaction changed, so this is the history of each user's scores.
CREATE TABLE IF NOT EXISTS user_scores
(
    user_id          String,
    scored_at        DateTime64(3, 'UTC') COMMENT 'event time of what was scored',
    event_id         String COMMENT 'the event scored; empty for a timer tick',
    intent_purchase  Float32,
    intent_need_help Float32,
    intent_browse    Float32,
    intent_leave     Float32,
    top_intent       LowCardinality(String),
    churn            Float32 COMMENT 'probability of no activity within the churn horizon',
    health           UInt8 COMMENT '0-100, README "Prediction"',
    satisfaction     Nullable(Float32) COMMENT '0-1, NULL for a user who never gave feedback',
    intent_examples  UInt64 COMMENT 'examples the intent model had learned',
    churn_examples   UInt64,
    kafka_partition  UInt16,
    kafka_offset     UInt64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(scored_at)
-- Read per user over time (a user's trajectory); the natural id (user_id, scored_at, event_id) closes
-- the key so that re-processed copies collapse.
ORDER BY (user_id, scored_at, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_user_scores_mv TO sink_offsets AS
SELECT 'user_scores' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM user_scores GROUP BY kafka_partition;

-- The latest score of each user: ReplacingMergeTree keeps the row with the greatest scored_at per user
-- (read with FINAL, or argMax, for an exact answer before merges). Lists such as "users most at risk"
-- read this table, not the history.
CREATE TABLE IF NOT EXISTS user_scores_latest
(
    user_id          String,
    scored_at        DateTime64(3, 'UTC'),
    intent_purchase  Float32,
    intent_need_help Float32,
    intent_browse    Float32,
    intent_leave     Float32,
    top_intent       LowCardinality(String),
    churn            Float32,
    health           UInt8,
    satisfaction     Nullable(Float32),
    intent_examples  UInt64,
    churn_examples   UInt64
)
ENGINE = ReplacingMergeTree(scored_at)
ORDER BY user_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS user_scores_latest_mv TO user_scores_latest AS
SELECT user_id, scored_at, intent_purchase, intent_need_help, intent_browse, intent_leave, top_intent,
       churn, health, satisfaction, intent_examples, churn_examples
FROM user_scores;

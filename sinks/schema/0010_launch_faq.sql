-- Forewarn schema, version 10: FAQ forecasts for launches (models.launch_faq), and whether a hot
-- issue's topic was forecast.
--
-- Every statement is re-runnable (IF NOT EXISTS). No user data: topics, counts and normalised
-- example questions (as hot_issues' top questions are), so no pseudonyms; the retention (TTL) of the
-- settings applies from made_at, as on every table the sink stores.

-- One row per forecast, age bucket and topic (the `launch_faq_forecasts` topic): the topic's rank in
-- the bucket (1 first), its mean share over the earlier launches used and its expected count (share x
-- the bucket's expected questions). A bucket without topics is one row of rank 0 with its reason
-- (no_earlier_launch, no_questions). A forecast is made once per event-time day per product in its
-- launch window, and again when its basis grows; a remake of the same day and basis has the same
-- forecast_id, and ReplacingMergeTree keeps one row of it.
CREATE TABLE IF NOT EXISTS launch_faq_forecast
(
    forecast_id      UUID,
    made_at          DateTime64(3, 'UTC') COMMENT 'event time of the question it was made at',
    decided_at       DateTime64(3, 'UTC'),
    product_id       String,
    category         LowCardinality(String),
    launched_at      DateTime64(3, 'UTC'),
    volume           Float64 COMMENT 'expected questions relative to the earlier launches (catalog)',
    bucket           LowCardinality(String) COMMENT 'days since launch: 0-1, 1-3, 3-7, 7-14, 14-30',
    bucket_index     UInt8,
    rank             UInt8 COMMENT '1 first; 0: the bucket has no topics (see reason)',
    topic            String,
    share            Float64,
    expected_count   Float64,
    examples         Array(String) COMMENT 'normalised example questions of earlier launches',
    based_on         Array(String) COMMENT 'the earlier launches used for the bucket',
    bucket_questions Float64 COMMENT 'expected questions in the bucket',
    reason           LowCardinality(String) COMMENT 'empty, few_questions, no_questions, no_earlier_launch',
    kafka_partition  UInt16,
    kafka_offset     UInt64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(made_at)
ORDER BY (product_id, made_at, forecast_id, bucket_index, rank)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_launch_faq_forecast_mv TO sink_offsets AS
SELECT 'launch_faq_forecast' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM launch_faq_forecast GROUP BY kafka_partition;

-- The latest forecast of each product (by made_at, then forecast_id): what `forewarn faq` reads.
CREATE VIEW IF NOT EXISTS launch_faq_latest AS
SELECT f.*
FROM launch_faq_forecast AS f FINAL
INNER JOIN
(
    SELECT product_id, argMax(forecast_id, (made_at, forecast_id)) AS latest
    FROM launch_faq_forecast
    GROUP BY product_id
) AS l ON f.product_id = l.product_id AND f.forecast_id = l.latest
ORDER BY f.product_id, f.bucket_index, f.rank;

-- A hot issue's `forecast` field as a column: 1 the launch's FAQ forecast named the topic for the
-- product's age, 0 it did not, NULL no forecast (not in a launch window, or stored before).
ALTER TABLE hot_issues
    ADD COLUMN IF NOT EXISTS forecast Nullable(UInt8)
        COMMENT '1 forecast for the launch, 0 not, NULL no forecast' AFTER launch_prior_used;

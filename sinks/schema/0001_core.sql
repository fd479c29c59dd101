-- Forewarn core schema, version 1: raw events, interventions, dead letters, per-minute aggregates.
--
-- Every raw table is a ReplacingMergeTree whose sorting key holds the row's natural id, and has an
-- insert-deduplication window: the sink retries a failed batch with the same insert_deduplication_token,
-- so a retried batch is dropped whole (and so are the materialized views' rows it would have made).
-- kafka_partition/kafka_offset record where each row came from; sink_offsets keeps the highest stored
-- offset per partition so that a sink that crashed between insert and commit resumes past it.

CREATE TABLE IF NOT EXISTS events
(
    event_id        String,
    source          LowCardinality(String),
    event_type      LowCardinality(String),
    event_time      DateTime64(3, 'UTC'),
    user_id         String,
    session_id      String,
    order_id        String,
    shipment_id     String,
    page            String,
    attrs           String COMMENT 'type-specific fields as JSON',
    kafka_partition UInt16,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
-- Read per user (timelines, erasure) and per time range; counts by type come from events_per_minute.
ORDER BY (user_id, event_time, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS interventions
(
    intervention_id UUID,
    trigger         LowCardinality(String),
    action          LowCardinality(String),
    channel         LowCardinality(String),
    user_id         String,
    event_time      DateTime64(3, 'UTC'),
    decided_at      DateTime64(3, 'UTC'),
    reason          String,
    source_event_id String,
    evidence        String COMMENT 'JSON',
    kafka_partition UInt16,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX intervention_id_bloom intervention_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
-- Read by trigger over time; looked up by id (outcome joins) through the bloom filter.
ORDER BY (trigger, event_time, intervention_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS dead_letters
(
    source_topic     LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    reason           LowCardinality(String),
    detail           String,
    rejected_at      DateTime64(3, 'UTC'),
    payload          String COMMENT 'the original message bytes',
    payload_bytes    UInt32,
    kafka_partition  UInt16,
    kafka_offset     UInt64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(rejected_at)
ORDER BY (reason, source_topic, source_partition, source_offset)
SETTINGS non_replicated_deduplication_window = 10000;

-- Per-minute aggregates, kept by ClickHouse. Read with sum(...) GROUP BY: rows of one key are only
-- summed when parts merge.
CREATE TABLE IF NOT EXISTS events_per_minute
(
    minute     DateTime('UTC'),
    source     LowCardinality(String),
    event_type LowCardinality(String),
    events     UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, source, event_type)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_minute_mv TO events_per_minute AS
SELECT toStartOfMinute(event_time) AS minute, source, event_type, count() AS events
FROM events
GROUP BY minute, source, event_type;

CREATE TABLE IF NOT EXISTS interventions_per_minute
(
    minute        DateTime('UTC'),
    trigger       LowCardinality(String),
    interventions UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, trigger)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS interventions_per_minute_mv TO interventions_per_minute AS
SELECT toStartOfMinute(event_time) AS minute, trigger, count() AS interventions
FROM interventions
GROUP BY minute, trigger;

CREATE TABLE IF NOT EXISTS dead_letters_per_minute
(
    minute       DateTime('UTC'),
    reason       LowCardinality(String),
    dead_letters UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, reason)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS dead_letters_per_minute_mv TO dead_letters_per_minute AS
SELECT toStartOfMinute(rejected_at) AS minute, reason, count() AS dead_letters
FROM dead_letters
GROUP BY minute, reason;

-- Highest offset stored per table and Kafka partition, maintained within each insert.
CREATE TABLE IF NOT EXISTS sink_offsets
(
    table_name      LowCardinality(String),
    kafka_partition UInt16,
    max_offset      SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (table_name, kafka_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_events_mv TO sink_offsets AS
SELECT 'events' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM events GROUP BY kafka_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_interventions_mv TO sink_offsets AS
SELECT 'interventions' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM interventions GROUP BY kafka_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_dead_letters_mv TO sink_offsets AS
SELECT 'dead_letters' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM dead_letters GROUP BY kafka_partition;

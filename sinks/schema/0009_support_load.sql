-- Forewarn schema, version 9: the support-load forecast (streams.processes.support_load).
--
-- Every statement is re-runnable (IF NOT EXISTS), like 0001. Neither table holds user data: counts
-- and forecasts per channel and 15-minute slot, no user id or pseudonym. Retention (TTL) comes from
-- the settings, as for every table the sink writes (sinks.retention: by made_at, by slot_start).

-- Every forecast as made: one row per channel, time it was made and slot forecast (96 slots, the
-- next 24 hours after the slot in progress, made every 15 minutes of event time), so that accuracy
-- can be measured afterwards. horizon_minutes = slot_start - made_at (15 .. 1440). Ordered for both
-- "the latest forecast of a channel" (argMax by made_at over a channel's rows) and "the forecast made
-- h hours before slot X" (channel, slot_start, then made_at).
CREATE TABLE IF NOT EXISTS support_load_forecast
(
    made_at                 DateTime64(3, 'UTC') COMMENT 'event time: the end of the last closed slot learned',
    channel                 LowCardinality(String) COMMENT 'chat, phone, email or other',
    slot_start              DateTime64(3, 'UTC'),
    horizon_minutes         UInt16,
    forecast                Float64 COMMENT 'contacts expected in the slot',
    agents_needed           UInt16 COMMENT 'ceil(forecast per hour / contacts per agent per hour)',
    agents_on_shift         UInt16 COMMENT 'from [staffing] of the policy in force',
    contacts_per_agent_hour Float64,
    kafka_partition         UInt16,
    kafka_offset            UInt64,
    inserted_at             DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(made_at)
ORDER BY (channel, slot_start, made_at)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_support_load_forecast_mv TO sink_offsets AS
SELECT 'support_load_forecast' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM support_load_forecast GROUP BY kafka_partition;

-- The contacts counted per channel in each closed slot (late ones left out: see the metric
-- forewarn_support_contacts_total{how="late"}): the actuals the forecasts are measured against.
CREATE TABLE IF NOT EXISTS support_load_actual
(
    slot_start      DateTime64(3, 'UTC'),
    channel         LowCardinality(String),
    contacts        UInt32,
    closed_at       DateTime64(3, 'UTC') COMMENT 'wall clock of the worker that closed it',
    kafka_partition UInt16,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(slot_start)
ORDER BY (channel, slot_start)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_support_load_actual_mv TO sink_offsets AS
SELECT 'support_load_actual' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM support_load_actual GROUP BY kafka_partition;

-- Forewarn schema, version 11: cross-department response times. What the service desk did with the
-- tickets and what product and marketing did with the feedback (the updates the worker took in:
-- streams.processes.desk), the views of response times per service point, team and week, and the
-- end-to-end automation share.
--
-- Every statement is re-runnable (IF NOT EXISTS), like 0001. user_id columns hold pseudonyms; the TTL
-- comes from the settings (sinks.retention), as on every table holding users' data, and an erasure
-- deletes the user's rows (sinks.erasure). Weeks start on Monday, UTC (toMonday).

-- One row per ticket update taken in (the `ticket_progress` topic). An update delivered twice is one
-- row once merged (the key ends with update_id); the views read it FINAL.
CREATE TABLE IF NOT EXISTS ticket_updates
(
    update_id         String,
    ticket_id         UUID,
    user_id           String,
    status            LowCardinality(String) COMMENT 'accepted, technician_assigned, on_site, resolved, reopened, cancelled',
    previous_status   LowCardinality(String) COMMENT 'open before the first update',
    updated_at        DateTime64(3, 'UTC') COMMENT 'event time of the update',
    ticket_created_at DateTime64(3, 'UTC') COMMENT 'event time of the repair request',
    dispatch          LowCardinality(String) COMMENT 'assigned (automatically) or manual',
    service_point_id  LowCardinality(String) COMMENT 'the point handling the ticket, as the update says',
    technician        String,
    note              String,
    first_response    UInt8 COMMENT '1 for the ticket''s first update',
    reopens           UInt16 COMMENT 'times reopened, this update included',
    kafka_partition   UInt16,
    kafka_offset      UInt64,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(updated_at)
-- Read per service point and week of the ticket's creation.
ORDER BY (service_point_id, ticket_created_at, ticket_id, update_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_ticket_updates_mv TO sink_offsets AS
SELECT 'ticket_updates' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM ticket_updates GROUP BY kafka_partition;

-- One row per feedback update taken in (the `feedback_progress` topic), per team.
CREATE TABLE IF NOT EXISTS feedback_updates
(
    update_id       String,
    feedback_id     String,
    user_id         String,
    team            LowCardinality(String),
    status          LowCardinality(String) COMMENT 'acknowledged, planned, shipped, declined',
    previous_status LowCardinality(String) COMMENT 'the team''s, open before its first update',
    updated_at      DateTime64(3, 'UTC') COMMENT 'event time of the update',
    feedback_at     DateTime64(3, 'UTC') COMMENT 'event time of the feedback',
    routed          UInt8 COMMENT '1 when the feedback''s tags routed it to this team',
    note            String,
    first_response  UInt8 COMMENT '1 for the team''s first update of the feedback',
    kafka_partition UInt16,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(updated_at)
-- Read per team and week of the feedback.
ORDER BY (team, feedback_at, feedback_id, update_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_feedback_updates_mv TO sink_offsets AS
SELECT 'feedback_updates' AS table_name, kafka_partition, max(kafka_offset) AS max_offset
FROM feedback_updates GROUP BY kafka_partition;

-- ticket_response: one row per ticket, with its updates folded in.
--   service_point_id: the point of the ticket's latest update (a manual ticket gets its point from the
--     desk), else the dispatched one ('' for a manual ticket no update reached).
--   first_response_hours: from the repair request to the ticket's first update, whatever its status;
--     NULL while none came.
--   resolution_hours: from the repair request to its latest `resolved`, for tickets whose status is
--     resolved now (a reopened ticket counts until it is resolved again); NULL otherwise.
--   reopened: reopened at least once; ever_resolved: resolved at least once (the reopen rate's base).
--   status: the latest update's ('open' while none came); updates of one ticket are on one partition,
--     in order, so equal times are ordered by offset.
CREATE VIEW IF NOT EXISTS ticket_response AS
WITH updates AS
(
    SELECT
        ticket_id,
        1 AS has_updates,
        argMax(service_point_id, (updated_at, kafka_offset)) AS latest_point,
        argMax(status, (updated_at, kafka_offset)) AS latest_status,
        min(updated_at) AS first_response_at,
        maxIf(updated_at, status = 'resolved') AS resolved_at,
        max(status = 'resolved') AS any_resolved,
        max(status = 'reopened') AS any_reopened
    FROM ticket_updates FINAL
    GROUP BY ticket_id
)
SELECT
    t.ticket_id AS ticket_id,
    t.user_id AS user_id,
    t.created_at AS created_at,
    toMonday(t.created_at) AS week,
    if(u.has_updates = 1 AND u.latest_point != '', u.latest_point, t.service_point_id) AS service_point_id,
    t.dispatch AS dispatch,
    if(u.has_updates = 1, u.latest_status, 'open') AS status,
    u.has_updates = 1 AS responded,
    if(u.has_updates = 1, dateDiff('millisecond', t.created_at, u.first_response_at) / 3600000.0, NULL)
        AS first_response_hours,
    if(u.has_updates = 1 AND u.latest_status = 'resolved',
        dateDiff('millisecond', t.created_at, u.resolved_at) / 3600000.0, NULL) AS resolution_hours,
    u.has_updates = 1 AND u.any_resolved = 1 AS ever_resolved,
    u.has_updates = 1 AND u.any_reopened = 1 AS reopened
FROM (SELECT ticket_id, user_id, created_at, dispatch, service_point_id FROM tickets FINAL) AS t
LEFT JOIN updates AS u ON u.ticket_id = t.ticket_id;

-- department_weekly_tickets: per week of the tickets' creation and service point. Times in hours;
-- quantiles exact. reopen_rate: reopened among those ever resolved; automatic_share: dispatched
-- automatically (dispatch = assigned) among all tickets of the point (manual ones get their point from
-- the desk's updates).
CREATE VIEW IF NOT EXISTS department_weekly_tickets AS
SELECT
    week,
    service_point_id,
    count() AS tickets,
    countIf(dispatch = 'assigned') AS dispatched_automatically,
    countIf(dispatch = 'manual') AS dispatched_manually,
    dispatched_automatically / tickets AS automatic_share,
    countIf(responded) AS responded_tickets,
    quantileExactIf(0.5)(first_response_hours, responded) AS first_response_p50_hours,
    quantileExactIf(0.9)(first_response_hours, responded) AS first_response_p90_hours,
    countIf(resolution_hours IS NOT NULL) AS resolved_tickets,
    quantileExactIf(0.5)(resolution_hours, resolution_hours IS NOT NULL) AS resolution_p50_hours,
    quantileExactIf(0.9)(resolution_hours, resolution_hours IS NOT NULL) AS resolution_p90_hours,
    countIf(reopened) AS reopened_tickets,
    if(countIf(ever_resolved) > 0, countIf(reopened) / countIf(ever_resolved), NULL) AS reopen_rate
FROM ticket_response
GROUP BY week, service_point_id;

-- feedback_response: one row per tagged feedback and team it was routed to (feedback_tags.teams).
--   first_response_hours: from the feedback to the team's first update, whatever its status (a team
--     that plans or declines it has acknowledged it); NULL while none came.
--   status: the team's latest ('open' while none came).
CREATE VIEW IF NOT EXISTS feedback_response AS
WITH updates AS
(
    SELECT
        feedback_id,
        team,
        1 AS has_updates,
        min(updated_at) AS first_response_at,
        argMax(status, (updated_at, kafka_offset)) AS latest_status
    FROM feedback_updates FINAL
    GROUP BY feedback_id, team
)
SELECT
    f.feedback_id AS feedback_id,
    f.user_id AS user_id,
    f.team AS team,
    f.event_time AS given_at,
    toMonday(f.event_time) AS week,
    if(u.has_updates = 1, u.latest_status, 'open') AS status,
    u.has_updates = 1 AS acknowledged,
    if(u.has_updates = 1, dateDiff('millisecond', f.event_time, u.first_response_at) / 3600000.0, NULL)
        AS first_response_hours
FROM (SELECT feedback_id, user_id, event_time, team FROM feedback_tags FINAL ARRAY JOIN teams AS team) AS f
LEFT JOIN updates AS u ON u.feedback_id = f.feedback_id AND u.team = f.team;

-- department_weekly_feedback: per week of the feedback and team. acknowledged_within_3d: the team's
-- first update came within 3 days (72 hours, inclusive) of the feedback; share among all feedback
-- routed to the team that week (`forewarn report --ack-days N` reads other N from feedback_response).
CREATE VIEW IF NOT EXISTS department_weekly_feedback AS
SELECT
    week,
    team,
    count() AS feedback,
    countIf(acknowledged) AS acknowledged_feedback,
    countIf(acknowledged AND first_response_hours <= 72) AS acknowledged_within_3d,
    acknowledged_within_3d / feedback AS acknowledged_within_3d_share,
    quantileExactIf(0.5)(first_response_hours, acknowledged) AS first_response_p50_hours,
    quantileExactIf(0.9)(first_response_hours, acknowledged) AS first_response_p90_hours
FROM feedback_response
GROUP BY week, team;

-- automation_share: per week and kind of case, the cases and those handled end to end without a
-- person (docs/operations.md "End-to-end automation share"):
--   interventions: an emitted intervention is a case once it is concluded: an outcome `resolved` or
--     `escalated` came back, or it went to the human queue (channel human_queue, the escalate_to_human
--     trigger). Automated: resolved, never escalated, not sent to the human queue.
--   tickets: every ticket is a case; automated when dispatched automatically (dispatch = assigned).
--   orders: every order request decided is a case (an order command or a rejection); automated when
--     the order was taken in the chat (an order command).
-- week: of the intervention's event time, the ticket's creation, the order request.
CREATE VIEW IF NOT EXISTS automation_share AS
SELECT week, kind, sum(is_automated) AS automated, count() AS cases, automated / cases AS share
FROM
(
    SELECT toMonday(i.event_time) AS week, 'interventions' AS kind,
        toUInt8(o.resolved = 1 AND o.escalated = 0 AND i.channel != 'human_queue') AS is_automated
    FROM (SELECT intervention_id, event_time, channel FROM interventions FINAL) AS i
    LEFT JOIN
    (
        SELECT intervention_id, max(outcome = 'resolved') AS resolved, max(outcome = 'escalated') AS escalated
        FROM intervention_outcomes
        GROUP BY intervention_id
    ) AS o ON o.intervention_id = i.intervention_id
    WHERE i.channel = 'human_queue' OR o.resolved = 1 OR o.escalated = 1
    UNION ALL
    SELECT toMonday(created_at) AS week, 'tickets' AS kind, toUInt8(dispatch = 'assigned') AS is_automated
    FROM tickets FINAL
    UNION ALL
    SELECT toMonday(requested_at) AS week, 'orders' AS kind, toUInt8(1) AS is_automated
    FROM order_commands FINAL
    UNION ALL
    SELECT toMonday(requested_at) AS week, 'orders' AS kind, toUInt8(0) AS is_automated
    FROM order_rejections FINAL
)
GROUP BY week, kind;

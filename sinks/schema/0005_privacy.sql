-- Forewarn schema, version 5: the audit of erasures (sinks.erasure).
--
-- Every statement is re-runnable (IF NOT EXISTS), like 0001. Comment lines are dropped before the
-- statements are sent, so the definitions below are documented here and only here.
--
-- Retention (TTL) is not part of the schema: it comes from the settings and is set at every start
-- (sinks.retention), on this table as on every table holding users' data.

-- One row per erasure carried out in ClickHouse: who asked and when, when the worker removed the
-- user's state, when the sink finished deleting, and how many rows it deleted from each table
-- (counted just before the delete; dead_letters counts those whose payload named the user). It holds
-- neither the user id nor its pseudonym: the erased user leaves no trace, only the erasure does (a
-- request id or requester that contains the user id is stored with it replaced by '[erased]').
-- Erasing again under the same request id (a sink that stopped before committing does it again)
-- replaces the row: the latest completed_at wins, and its counts add up both runs.
CREATE TABLE IF NOT EXISTS erasures
(
    request_id    String,
    requested_by  String,
    requested_at  DateTime64(3, 'UTC') COMMENT 'event time of the erasure request',
    erased_at     DateTime64(3, 'UTC') COMMENT 'when the worker removed the user state (its wall clock)',
    completed_at  DateTime64(3, 'UTC') COMMENT 'when the sink had deleted the rows',
    state_removed UInt8 COMMENT '1 when the worker held state of the user',
    rows_deleted  Map(String, UInt64) COMMENT 'table -> rows deleted',
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(completed_at)
ORDER BY request_id;

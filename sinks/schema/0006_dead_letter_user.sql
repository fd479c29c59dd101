-- Forewarn schema, version 6: the user a dead letter belongs to, so that an erasure deletes exactly
-- that user's dead letters (sinks.erasure) rather than every payload containing the id as text.
--
-- Every statement is re-runnable (IF NOT EXISTS), like 0001. Comment lines are dropped before the
-- statements are sent, so the definitions below are documented here and only here.

-- The pseudonym (streams.contracts.privacy) of the payload's user_id, as the sink read it at insert
-- (sinks.rows.payload_user_id): the user_id member of a JSON object payload, or of a payload that is
-- not JSON the first "user_id": "..." member; '' when the payload names nobody. Rows stored before
-- this column existed have '': an erasure matches them by the payload's parsed user_id instead
-- (JSONExtractString), and the others expire with the dead letters' retention.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS user_id String DEFAULT ''
    COMMENT 'pseudonym of the user_id the payload names, or empty' AFTER payload_bytes;

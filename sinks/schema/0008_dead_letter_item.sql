-- Forewarn schema, version 8: which item of its message a dead letter is.
--
-- An envelope (streams.contracts.envelopes) carries many events in one Kafka message, and each event
-- refused is dead-lettered alone, at the envelope's topic, partition and offset. `source_item` tells
-- them apart: the refused event's position in its envelope, counted from 1 (the header
-- forewarn.dlq.source_item); 0 for a dead letter of a whole message, as every row stored before this
-- version reads. It joins the sorting key, which ReplacingMergeTree keeps one row of: without it two
-- events refused in one envelope for one reason were one row. A column added to the sorting key must
-- be added in the same statement, without a default expression (0 is the type's default), so both are
-- one statement; run again, it changes nothing.
ALTER TABLE dead_letters
    ADD COLUMN IF NOT EXISTS source_item UInt32
        COMMENT 'position of the refused item in its message, from 1; 0: the whole message' AFTER reason,
    MODIFY ORDER BY (reason, source_topic, source_partition, source_offset, source_item);

-- Forewarn schema, version 7: the size and SHA-256 of a dead letter's original message.
--
-- A dead letter keeps its original bytes up to 256 KiB and only the first 256 KiB of a larger message
-- (streams.contracts.deadletters): `payload` holds what was kept, `payload_bytes` its length,
-- `original_bytes` and `original_sha256` the message as it was read (equal to the payload's when
-- nothing was cut).
-- Rows stored before this version read 0 and ''.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS original_bytes UInt64
    COMMENT 'size of the original message; above payload_bytes when the payload was cut' AFTER payload_bytes;

ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS original_sha256 String
    COMMENT 'hex SHA-256 of the original message' AFTER original_bytes;

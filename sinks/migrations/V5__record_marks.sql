-- The job knows its log: with each partition's next offset, the mark of the last record it
-- applied there (its offset, log timestamp and the xxh3 hash of its key and payload). At start
-- the job reads the log at that offset and refuses a log that holds another record there (the
-- broker lost its data and was written again, a topic recreated): docs/sink.md.
ALTER TABLE stream_progress
    ADD COLUMN last_offset BIGINT NULL,
    ADD COLUMN last_timestamp_ms BIGINT NULL,
    ADD COLUMN last_hash BIGINT UNSIGNED NULL;

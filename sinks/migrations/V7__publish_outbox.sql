-- `--publish-portfolios` with the MySQL sink: a batch's messages are written here in the
-- batch's own transaction, then published and deleted in a transaction that holds the lease
-- (docs/sink.md). A fenced run commits nothing, so it publishes nothing; a run that stopped
-- between a commit and its publication leaves its messages here, and the next run publishes
-- them first (at least once).
CREATE TABLE IF NOT EXISTS publish_outbox (
    id      BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    topic   VARCHAR(249)  NOT NULL,
    msg_key VARBINARY(255) NOT NULL,
    payload MEDIUMBLOB    NOT NULL
) ENGINE = InnoDB;

-- The job's state lives here, written in the same transaction as the rows and the offsets
-- (docs/sink.md): a restart loads it instead of re-reading the log from its start.

-- The latest close of every (stock, day), with the version (log timestamp, partition, offset)
-- that won: a replay re-reads records on top of it, and the latest version still wins.
CREATE TABLE IF NOT EXISTS prices (
    ticker            VARCHAR(16)    NOT NULL,
    as_of             DATE           NOT NULL,
    price             DECIMAL(15, 6) NOT NULL,
    version_ts        BIGINT         NOT NULL,
    version_partition INT            NOT NULL,
    version_offset    BIGINT         NOT NULL,
    PRIMARY KEY (ticker, as_of)
) ENGINE = InnoDB;

-- The latest holding record of every (portfolio, stock, first day).
CREATE TABLE IF NOT EXISTS holding_records (
    portfolio         VARCHAR(16) NOT NULL,
    ticker            VARCHAR(16) NOT NULL,
    from_day          DATE        NOT NULL,
    quantity          BIGINT      NOT NULL,
    version_ts        BIGINT      NOT NULL,
    version_partition INT         NOT NULL,
    version_offset    BIGINT      NOT NULL,
    PRIMARY KEY (portfolio, ticker, from_day)
) ENGINE = InnoDB;

-- One writer per job: every batch's transaction checks that its epoch still holds the lease.
CREATE TABLE IF NOT EXISTS job_leases (
    job          VARCHAR(64)  NOT NULL PRIMARY KEY,
    epoch        BIGINT       NOT NULL,
    host         VARCHAR(255) NOT NULL,
    pid          BIGINT       NOT NULL,
    started_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    heartbeat_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;

-- Portfolio-days with inputs but no evaluation: incomplete (a held stock has no close),
-- overflow (outside the contract's bounds), refused (the table refused the row).
CREATE TABLE IF NOT EXISTS evaluation_issues (
    portfolio  VARCHAR(16)  NOT NULL,
    as_of      DATE         NOT NULL,
    kind       VARCHAR(16)  NOT NULL,
    held       INT          NOT NULL,
    priced     INT          NOT NULL,
    detail     TEXT         NULL,
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (portfolio, as_of, kind),
    KEY evaluation_issues_by_kind (kind, as_of)
) ENGINE = InnoDB;

-- Change % fits the contract's bound (|change %| < 10^30, docs/input.md).
ALTER TABLE evaluations MODIFY nav_change_pct DECIMAL(38, 6) NULL;

-- Dead letters keep at most 64 KiB of a payload, and always its length and SHA-256.
ALTER TABLE dead_letters
    ADD COLUMN payload_len BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN payload_sha256 CHAR(64) NULL;

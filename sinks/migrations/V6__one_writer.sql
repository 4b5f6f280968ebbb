-- One trustworthy writer (docs/sink.md).
--
-- The lease names its run by a random id (not a host and pid, which two containers can share),
-- keeps the MySQL connection its transactions run on (a replacement run ends that connection
-- when the holder hangs with a transaction open) and a commit sequence number: every
-- transaction checks that the database still holds the run's last commit and bumps it, so a
-- database rolled back under a running job (a restore, a lossy failover) stops the job
-- instead of letting it write on top.
ALTER TABLE job_leases
    ADD COLUMN run_id     CHAR(32)        NOT NULL DEFAULT '',
    ADD COLUMN pid_ns     VARCHAR(128)    NOT NULL DEFAULT '',
    ADD COLUMN conn_id    BIGINT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN commit_seq BIGINT          NOT NULL DEFAULT 0;

-- The heartbeat lives apart from the lease row, which every commit locks: a long commit no
-- longer holds the heartbeat back (nor makes a live run look stale).
CREATE TABLE IF NOT EXISTS job_heartbeats (
    job          VARCHAR(64)  NOT NULL PRIMARY KEY,
    epoch        BIGINT       NOT NULL,
    heartbeat_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;

INSERT IGNORE INTO job_heartbeats (job, epoch, heartbeat_at)
    SELECT job, epoch, heartbeat_at FROM job_leases;

-- One owner per database: the tables (prices, holdings, evaluations, dead letters) hold one
-- job's rows and state, so a database belongs to the first job that takes a lease on it and
-- other job names are refused. An interrupted `db rebuild` leaves its start time here, and
-- `run` refuses to start until a rebuild finishes.
CREATE TABLE IF NOT EXISTS database_owner (
    id                 TINYINT      NOT NULL PRIMARY KEY,
    job                VARCHAR(64)  NOT NULL,
    claimed_at         TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    rebuild_started_at TIMESTAMP(6) NULL,
    CONSTRAINT database_owner_one_row CHECK (id = 1)
) ENGINE = InnoDB;

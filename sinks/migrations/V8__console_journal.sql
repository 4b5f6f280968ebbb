-- What the console (`stockflow console`, docs/console.md) shows of the job's commits. The sink
-- writes both tables in each batch's own transaction, so they never disagree with the rows,
-- and keeps them bounded: a row per commit (the latest 5,000 commits), and at most 500 of each
-- commit's evaluation diffs (the latest days first) for the latest 100 commits. A batch written
-- again after a lost COMMIT (which had landed) is not journalled again.
CREATE TABLE IF NOT EXISTS job_commits (
    job           VARCHAR(64)  NOT NULL,
    commit_seq    BIGINT       NOT NULL,
    epoch         BIGINT       NOT NULL,
    committed_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    -- Evaluation diffs: rows inserted and retracted, and the portfolio-days whose earlier
    -- evaluation the commit replaced or removed (a restatement of history).
    inserted      INT          NOT NULL,
    retracted     INT          NOT NULL,
    restated      INT          NOT NULL,
    -- Diffs kept in evaluation_changes (at most 500).
    kept          INT          NOT NULL,
    issues        INT          NOT NULL,
    state_rows    INT          NOT NULL,
    dead_letters  INT          NOT NULL,
    first_day     DATE         NULL,
    last_day      DATE         NULL,
    -- The newest record's log time to the end of the commit's writes (publish -> commit).
    freshness_ms  BIGINT       NULL,
    -- From the batch's first attempt to the end of its writes (retries included).
    duration_ms   BIGINT       NOT NULL,
    PRIMARY KEY (job, commit_seq)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS evaluation_changes (
    job            VARCHAR(64)    NOT NULL,
    commit_seq     BIGINT         NOT NULL,
    n              INT            NOT NULL,
    investor       VARCHAR(16)    NOT NULL,
    portfolio      VARCHAR(16)    NOT NULL,
    as_of          DATE           NOT NULL,
    diff           TINYINT        NOT NULL,
    restated       BOOLEAN        NOT NULL,
    -- The exact decimal text: a row the evaluations table refuses (out of range) is still
    -- journalled as it was, never clamped.
    nav            VARCHAR(64)    NOT NULL,
    nav_change     VARCHAR(64)    NULL,
    nav_change_pct VARCHAR(64)    NULL,
    PRIMARY KEY (job, commit_seq, n)
) ENGINE = InnoDB;

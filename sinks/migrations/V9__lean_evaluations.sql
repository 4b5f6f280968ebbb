-- The evaluations table keeps only the index its queries use (docs/sink.md, "Indexes"): the
-- primary key (portfolio, as_of) serves the course's views (one portfolio's days), the
-- reports (an investor's portfolios, by portfolio), the console (a portfolio's days, latest
-- first), `status` and the restore's seeds. The index by investor served none of them alone
-- and cost about 45 % of every evaluation write.
--
-- Dropped only if it is there (MySQL has no DROP INDEX IF EXISTS): applying this again after
-- a crash inside it is harmless.
SET @stockflow_v9 = (
    SELECT IF(COUNT(*) > 0, 'ALTER TABLE evaluations DROP INDEX evaluations_by_investor', 'DO 0')
    FROM information_schema.STATISTICS
    WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'evaluations'
      AND INDEX_NAME = 'evaluations_by_investor');
PREPARE stockflow_v9 FROM @stockflow_v9;
EXECUTE stockflow_v9;
DEALLOCATE PREPARE stockflow_v9;

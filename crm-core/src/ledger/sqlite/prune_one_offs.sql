-- Retention of one-off runs (RunLedger::prune): those asked for before ?1 whose run has
-- finished. Deleted before the runs, so that their runs may go in the same prune; one still
-- pending (its job paused) or still running stays.
DELETE FROM job_one_off_runs
WHERE at_us < ?1
  AND EXISTS (
      SELECT 1 FROM job_runs AS r
      WHERE r.code = job_one_off_runs.code AND r.kind = 'manual'
        AND r.tick_us = job_one_off_runs.at_us AND r.outcome <> 'running')

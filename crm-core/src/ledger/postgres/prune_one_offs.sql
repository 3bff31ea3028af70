-- Retention of one-off runs (RunLedger::prune): those asked for before $1 whose run has
-- finished. Deleted before the runs, so that their runs may go in the same prune; one still
-- pending (its job paused) or still running stays.
DELETE FROM job_one_off_runs AS o
WHERE o.at < $1
  AND EXISTS (
      SELECT 1 FROM job_runs AS r
      WHERE r.code = o.code AND r.kind = 'manual' AND r.tick = o.at
        AND r.outcome <> 'running')

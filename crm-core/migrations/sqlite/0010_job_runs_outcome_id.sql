-- A job's latest run of one outcome by id (its latest success, its latest failure: the health
-- landmarks RunLedger::recent_runs reads) is a walk from the end of one index range that stops
-- at the first row, however many runs of that outcome the ledger holds. Served before only by
-- job_runs_outcome_end_idx (by end, not id), which read and sorted all of them: a year of
-- heartbeats is 95,000 successes.
CREATE INDEX IF NOT EXISTS job_runs_outcome_id_idx ON job_runs (code, outcome, id);

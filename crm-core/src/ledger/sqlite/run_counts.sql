-- Every job's runs per outcome (job_run_counts, migration 0009) with the latest end of a run of
-- that outcome still in the ledger (dry runs left out): an index walk from the newest end per
-- row (job_runs_outcome_end_idx).
SELECT c.code, c.outcome, c.runs, c.duration_us,
       (SELECT max(r.ended_at_us) FROM job_runs AS r
        WHERE r.code = c.code AND r.outcome = c.outcome AND r.kind <> 'dry_run') AS last_ended_us
FROM job_run_counts AS c
ORDER BY c.code, c.outcome

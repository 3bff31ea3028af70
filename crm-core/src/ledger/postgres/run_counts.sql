-- Every job's runs per outcome (job_run_counts, migrations 0009 and 0014: rows appended as runs
-- end, summed here, folded by fold_run_counts.sql) with the latest end of a run of that outcome
-- still in the ledger (dry runs left out): an index walk from the newest end per pair
-- (job_runs_outcome_end_idx).
SELECT c.code, c.outcome, sum(c.runs)::BIGINT AS runs, sum(c.duration_us)::BIGINT AS duration_us,
       (SELECT (extract(epoch FROM max(r.ended_at)) * 1000000)::bigint FROM job_runs AS r
        WHERE r.code = c.code AND r.outcome = c.outcome AND r.kind <> 'dry_run') AS last_ended_us
FROM job_run_counts AS c
GROUP BY c.code, c.outcome
ORDER BY c.code, c.outcome

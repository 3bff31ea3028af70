-- Every job's latest run, dry runs aside, by code.
SELECT id, code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
    lease_until_us, host, pid
FROM job_runs WHERE id IN (SELECT MAX(id) FROM job_runs WHERE kind <> 'dry_run' GROUP BY code)
ORDER BY code

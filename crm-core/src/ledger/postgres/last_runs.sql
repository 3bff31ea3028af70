-- Every job's latest run, dry runs aside, by code.
SELECT id, code, tick, kind, attempt, started_at, ended_at, outcome, message, lease_until,
    host, pid
FROM job_runs WHERE id IN (SELECT MAX(id) FROM job_runs WHERE kind <> 'dry_run' GROUP BY code)
ORDER BY code

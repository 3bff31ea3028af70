-- The oldest run of job $1 still running (dry runs aside): what keeps an exclusive claim out.
SELECT id, code, tick, kind, attempt, started_at, ended_at, outcome, message, lease_until,
    host, pid
FROM job_runs WHERE code = $1 AND outcome = 'running' AND kind <> 'dry_run' ORDER BY id LIMIT 1

-- The running runs, of job $1 or of all when it is NULL, oldest first.
SELECT id, code, tick, kind, attempt, started_at, ended_at, outcome, message, lease_until,
    host, pid
FROM job_runs WHERE outcome = 'running' AND ($1::text IS NULL OR code = $1) ORDER BY id

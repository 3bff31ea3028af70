-- The newest runs, of job $1 or of all when it is NULL, at most $2.
SELECT id, code, tick, kind, attempt, started_at, ended_at, outcome, message, lease_until,
    host, pid
FROM job_runs WHERE ($1::text IS NULL OR code = $1) ORDER BY started_at DESC, id DESC LIMIT $2

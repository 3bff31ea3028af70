-- The running runs, of job ?1 or of all when it is NULL, oldest first.
SELECT id, code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
    lease_until_us, host, pid
FROM job_runs WHERE outcome = 'running' AND (?1 IS NULL OR code = ?1) ORDER BY id

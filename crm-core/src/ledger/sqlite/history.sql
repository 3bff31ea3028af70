-- The newest runs, of job ?1 or of all when it is NULL, at most ?2.
SELECT id, code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
    lease_until_us, host, pid
FROM job_runs WHERE (?1 IS NULL OR code = ?1) ORDER BY started_at_us DESC, id DESC LIMIT ?2

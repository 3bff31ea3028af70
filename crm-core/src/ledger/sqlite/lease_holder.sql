-- The oldest run of job ?1 still running (dry runs aside): what keeps an exclusive claim out.
SELECT id, code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
    lease_until_us, host, pid
FROM job_runs WHERE code = ?1 AND outcome = 'running' AND kind <> 'dry_run' ORDER BY id LIMIT 1

-- Job ?1's latest scheduled run or retry, by tick, then attempt.
SELECT id, code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
    lease_until_us, host, pid
FROM job_runs WHERE code = ?1 AND kind IN ('scheduled', 'retry')
ORDER BY tick_us DESC, attempt DESC, id DESC LIMIT 1

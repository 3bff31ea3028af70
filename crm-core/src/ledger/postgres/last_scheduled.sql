-- Job $1's latest scheduled run or retry, by tick, then attempt.
SELECT id, code, tick, kind, attempt, started_at, ended_at, outcome, message, lease_until,
    host, pid
FROM job_runs WHERE code = $1 AND kind IN ('scheduled', 'retry')
ORDER BY tick DESC, attempt DESC, id DESC LIMIT 1

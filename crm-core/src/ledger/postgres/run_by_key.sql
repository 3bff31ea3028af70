-- The run with the claim key (code, kind, tick, attempt) = ($1, $2, $3, $4), if any.
SELECT id, code, tick, kind, attempt, started_at, ended_at, outcome, message, lease_until,
    host, pid
FROM job_runs WHERE code = $1 AND kind = $2 AND tick = $3 AND attempt = $4

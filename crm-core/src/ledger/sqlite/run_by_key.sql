-- The run with the claim key (code, kind, tick, attempt) = (?1, ?2, ?3, ?4), if any.
SELECT id, code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
    lease_until_us, host, pid
FROM job_runs WHERE code = ?1 AND kind = ?2 AND tick_us = ?3 AND attempt = ?4

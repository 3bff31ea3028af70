-- One-off runs not yet done: no manual run of their tick has ended (an abandoned one runs again).
SELECT id, code, at_us AS at, requested_by, requested_at_us AS requested_at FROM job_one_off_runs o
WHERE NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.code = o.code AND r.kind = 'manual'
    AND r.tick_us = o.at_us AND r.outcome NOT IN ('abandoned', 'running'))
ORDER BY at_us, id

SELECT code, kind, tick, opened_at, resolved_at FROM job_incidents
WHERE resolved_at IS NULL ORDER BY code

SELECT code, kind, tick_us, opened_at_us, resolved_at_us FROM job_incidents
WHERE resolved_at_us IS NULL ORDER BY code

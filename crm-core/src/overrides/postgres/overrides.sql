SELECT code, enabled, schedule, since, changed_by, changed_at FROM job_overrides ORDER BY code

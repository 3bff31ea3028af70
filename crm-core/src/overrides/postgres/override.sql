SELECT code, enabled, schedule, since, changed_by, changed_at FROM job_overrides WHERE code = $1

SELECT code, enabled, schedule, since_us AS since, changed_by, changed_at_us AS changed_at
FROM job_overrides WHERE code = ?1

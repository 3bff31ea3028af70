INSERT INTO job_overrides (code, enabled, schedule, since, changed_by, changed_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (code) DO UPDATE SET enabled = excluded.enabled, schedule = excluded.schedule,
    since = excluded.since, changed_by = excluded.changed_by, changed_at = excluded.changed_at

INSERT INTO job_overrides (code, enabled, schedule, since_us, changed_by, changed_at_us)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (code) DO UPDATE SET enabled = excluded.enabled, schedule = excluded.schedule,
    since_us = excluded.since_us, changed_by = excluded.changed_by,
    changed_at_us = excluded.changed_at_us

-- Job $2's open incident, resolved at $1.
UPDATE job_incidents SET resolved_at = $1 WHERE code = $2 AND resolved_at IS NULL
RETURNING code, kind, tick, opened_at, resolved_at

-- Job ?2's open incident, resolved at ?1.
UPDATE job_incidents SET resolved_at_us = ?1 WHERE code = ?2 AND resolved_at_us IS NULL
RETURNING code, kind, tick_us, opened_at_us, resolved_at_us

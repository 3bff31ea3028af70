INSERT INTO job_one_off_runs (code, at_us, requested_by, requested_at_us) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (code, at_us) DO NOTHING

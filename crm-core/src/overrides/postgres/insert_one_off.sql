INSERT INTO job_one_off_runs (code, at, requested_by, requested_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (code, at) DO NOTHING

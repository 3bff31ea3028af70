-- A skipped run, ended at its start $5, unless its claim key exists.
INSERT INTO job_runs (code, tick, kind, attempt, started_at, ended_at, outcome, message, host,
    pid)
VALUES ($1, $2, $3, $4, $5, $5, 'skipped', $6, $7, $8)
ON CONFLICT (code, kind, tick, attempt) DO NOTHING

-- A skipped run, ended at its start ?5, unless its claim key exists.
INSERT INTO job_runs (code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
    host, pid)
VALUES (?1, ?2, ?3, ?4, ?5, ?5, 'skipped', ?6, ?7, ?8)
ON CONFLICT (code, kind, tick_us, attempt) DO NOTHING

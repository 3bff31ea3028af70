-- A claimed run: (code, tick, kind, attempt, started_at, lease_until, host, pid), running.
INSERT INTO job_runs (code, tick_us, kind, attempt, started_at_us, outcome, lease_until_us,
    host, pid)
VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8)
RETURNING id, code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
    lease_until_us, host, pid

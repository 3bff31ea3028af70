-- A claimed run: (code, tick, kind, attempt, started_at, lease_until, host, pid), running.
INSERT INTO job_runs (code, tick, kind, attempt, started_at, outcome, lease_until, host, pid)
VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8)
RETURNING id, code, tick, kind, attempt, started_at, ended_at, outcome, message, lease_until,
    host, pid

-- Every running claim whose lease ended before $1 becomes abandoned (the message is kept in
-- step with `abandoned_message`).
UPDATE job_runs SET outcome = 'abandoned', ended_at = $1,
    message = 'abandoned: the runner (' || host || ', pid ' || pid || ') stopped renewing its lease'
WHERE outcome = 'running' AND lease_until < $1
RETURNING id, code, tick, kind, attempt, started_at, ended_at, outcome, message, lease_until,
    host, pid

-- Every running claim whose lease ended before ?1 becomes abandoned (the message is kept in
-- step with `abandoned_message`).
UPDATE job_runs SET outcome = 'abandoned', ended_at_us = ?1,
    message = 'abandoned: the runner (' || host || ', pid ' || pid || ') stopped renewing its lease'
WHERE outcome = 'running' AND lease_until_us < ?1
RETURNING id, code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
    lease_until_us, host, pid

-- A claim's first step: job ?1's running claims whose lease ended before ?2 become abandoned
-- (the message is kept in step with `abandoned_message`).
UPDATE job_runs SET outcome = 'abandoned', ended_at_us = ?2,
    message = 'abandoned: the runner (' || host || ', pid ' || pid || ') stopped renewing its lease'
WHERE code = ?1 AND outcome = 'running' AND lease_until_us < ?2

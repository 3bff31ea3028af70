-- Run $4 ends with outcome $1 at $2, message $3, if its outcome is still $5.
UPDATE job_runs SET outcome = $1, ended_at = $2, message = $3, lease_until = NULL
WHERE id = $4 AND outcome = $5

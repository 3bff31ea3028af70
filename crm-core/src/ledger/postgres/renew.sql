UPDATE job_runs SET lease_until = $1 WHERE id = $2 AND outcome = 'running'

UPDATE job_runs SET lease_until_us = ?1 WHERE id = ?2 AND outcome = 'running'

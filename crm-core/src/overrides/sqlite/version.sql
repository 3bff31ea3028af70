SELECT version FROM job_override_version WHERE id = 1

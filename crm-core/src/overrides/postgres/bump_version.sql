-- The change counter, one more. On PostgreSQL its row lock queues concurrent changes until
-- this one commits.
UPDATE job_override_version SET version = version + 1 WHERE id = 1 RETURNING version

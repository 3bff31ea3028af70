-- The newest audit entries, of job ?1 or of all when it is NULL, at most ?2.
SELECT id, at_us AS at, actor, code, action, detail FROM job_override_audit
WHERE (?1 IS NULL OR code = ?1) ORDER BY id DESC LIMIT ?2

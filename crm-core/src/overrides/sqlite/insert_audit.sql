INSERT INTO job_override_audit (at_us, actor, code, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)

-- Opens incident (code, kind, tick, opened_at) = (?1, ?2, ?3, ?4) unless the job has one open
-- (the partial unique index lets one insert win).
INSERT INTO job_incidents (code, kind, tick_us, opened_at_us) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT DO NOTHING

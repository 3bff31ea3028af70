-- Job $2's open late incident becomes missed at tick $1 (one update wins).
UPDATE job_incidents SET kind = 'missed', tick = $1
WHERE code = $2 AND resolved_at IS NULL AND kind = 'late'

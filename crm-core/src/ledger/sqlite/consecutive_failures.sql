-- Job ?1's failed or abandoned runs since its last success (dry runs aside).
SELECT COUNT(*) FROM job_runs WHERE code = ?1 AND kind <> 'dry_run'
    AND outcome IN ('failed', 'abandoned') AND id > COALESCE((SELECT MAX(id) FROM job_runs
        WHERE code = ?1 AND kind <> 'dry_run' AND outcome = 'succeeded'), 0)

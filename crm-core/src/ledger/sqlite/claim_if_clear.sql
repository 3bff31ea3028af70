-- RunLedger::claim_if_clear: the run inserted as running, unless a running claim of any job has
-- a lease that ended before ?9, the key is taken, or (?10: exclusive) another run of the job is
-- running; answers its id and the job's failures in a row before it (consecutive_failures).
INSERT INTO job_runs (code, tick_us, kind, attempt, started_at_us, outcome, lease_until_us, host, pid)
SELECT ?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8
WHERE NOT EXISTS (
    SELECT 1 FROM job_runs
    WHERE outcome = 'running' AND (lease_until_us < ?9 OR (?10 AND code = ?1 AND kind <> 'dry_run'))
)
ON CONFLICT (code, kind, tick_us, attempt) DO NOTHING
RETURNING id, (
    SELECT COUNT(*) FROM job_runs AS f
    WHERE f.code = ?1 AND f.kind <> 'dry_run' AND f.outcome IN ('failed', 'abandoned')
      AND f.id > COALESCE((
          SELECT s.id FROM job_runs AS s
          WHERE s.code = ?1 AND s.outcome = 'succeeded' AND s.kind <> 'dry_run'
          ORDER BY s.id DESC LIMIT 1), 0)
) AS prior_failures

-- RunLedger::claim_if_clear: the run inserted as running by job_runs_claim_if_clear (migrations
-- 0011 and 0012; under the job's advisory lock $11 if exclusive), unless a running claim of any
-- job has a lease that ended before $9, the key is taken, or ($10: exclusive) another run of the
-- job is running; answers its id and the job's failures in a row before it (consecutive_failures).
SELECT c.id, (
    SELECT count(*) FROM job_runs AS f
    WHERE f.code = $1 AND f.kind <> 'dry_run' AND f.outcome IN ('failed', 'abandoned')
      AND f.id > COALESCE((
          SELECT s.id FROM job_runs AS s
          WHERE s.code = $1 AND s.outcome = 'succeeded' AND s.kind <> 'dry_run'
          ORDER BY s.id DESC LIMIT 1), 0)
) AS prior_failures
FROM (SELECT job_runs_claim_if_clear($11, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10) AS id) AS c
WHERE c.id IS NOT NULL

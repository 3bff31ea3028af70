-- Every job's latest `per_job` runs and its landmarks (latest success, latest failure or abandoned
-- run, latest scheduled run or retry by tick), dry runs left out (RunLedger::recent_runs).
-- Every part is an index walk from the newest entry down that stops at its LIMIT, so the cost
-- follows the number of jobs, not the ledger's length:
-- - the codes: a skip scan, one seek per code on job_runs_code_started_idx (a DISTINCT read the
--   whole index);
-- - the latest runs: job_runs_code_started_idx;
-- - the latest success and failure: job_runs_outcome_id_idx (0010), one walk per outcome (an
--   IN over two outcomes cannot be walked in id order, so it sorted every such run);
-- - the latest scheduled run or retry: job_runs_claim_key, one walk per kind (same reason),
--   then the later of the two; a kind's rows are unique per tick and attempt.
-- The ids are fetched as an array (= ANY (ARRAY(...))): the planner cannot tell how few there
-- are, and as an IN list it hashed them and read the whole table to join them.
WITH RECURSIVE walk(code) AS (
    SELECT min(code) FROM job_runs
    UNION ALL
    SELECT (SELECT min(z.code) FROM job_runs AS z WHERE z.code > w.code)
    FROM walk AS w WHERE w.code IS NOT NULL
), codes AS (SELECT code FROM walk WHERE code IS NOT NULL)
SELECT id, code, tick, kind, attempt, started_at, ended_at, outcome, message,
       lease_until, host, pid
FROM job_runs
WHERE id = ANY (ARRAY(
    SELECT y.id FROM codes AS c CROSS JOIN LATERAL (
        SELECT z.id FROM job_runs AS z
        WHERE z.code = c.code AND z.kind <> 'dry_run'
        ORDER BY z.started_at DESC, z.id DESC LIMIT $1) AS y
    UNION
    SELECT (SELECT z.id FROM job_runs AS z
            WHERE z.code = c.code AND z.kind <> 'dry_run' AND z.outcome = 'succeeded'
            ORDER BY z.id DESC LIMIT 1)
    FROM codes AS c
    UNION
    SELECT (SELECT max(f.id) FROM job_runs AS f WHERE f.id IN (
                (SELECT z.id FROM job_runs AS z
                 WHERE z.code = c.code AND z.kind <> 'dry_run' AND z.outcome = 'failed'
                 ORDER BY z.id DESC LIMIT 1),
                (SELECT z.id FROM job_runs AS z
                 WHERE z.code = c.code AND z.kind <> 'dry_run' AND z.outcome = 'abandoned'
                 ORDER BY z.id DESC LIMIT 1)))
    FROM codes AS c
    UNION
    SELECT (SELECT s.id FROM job_runs AS s WHERE s.id IN (
                (SELECT z.id FROM job_runs AS z WHERE z.code = c.code AND z.kind = 'scheduled'
                 ORDER BY z.tick DESC, z.attempt DESC LIMIT 1),
                (SELECT z.id FROM job_runs AS z WHERE z.code = c.code AND z.kind = 'retry'
                 ORDER BY z.tick DESC, z.attempt DESC LIMIT 1))
            ORDER BY s.tick DESC, s.attempt DESC, s.id DESC LIMIT 1)
    FROM codes AS c))
ORDER BY code, started_at DESC, id DESC

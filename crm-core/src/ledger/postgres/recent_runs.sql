-- Per job: its $1 latest runs (dry runs aside), its last success, its last failure and its last
-- scheduled run or retry. Each part is an index walk from the newest row down.
WITH codes AS (SELECT DISTINCT code FROM job_runs)
SELECT id, code, tick, kind, attempt, started_at, ended_at, outcome, message, lease_until,
    host, pid
FROM job_runs WHERE id IN (
    SELECT y.id FROM codes AS c CROSS JOIN LATERAL (
        SELECT z.id FROM job_runs AS z WHERE z.code = c.code
        AND z.kind <> 'dry_run' ORDER BY z.started_at DESC, z.id DESC LIMIT $1) AS y
    UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code
        AND z.kind <> 'dry_run' AND z.outcome = 'succeeded'
        ORDER BY z.id DESC LIMIT 1) FROM codes AS c
    UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code
        AND z.kind <> 'dry_run' AND z.outcome IN ('failed', 'abandoned')
        ORDER BY z.id DESC LIMIT 1) FROM codes AS c
    UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code
        AND z.kind IN ('scheduled', 'retry')
        ORDER BY z.tick DESC, z.attempt DESC, z.id DESC LIMIT 1) FROM codes AS c)
ORDER BY code, started_at DESC, id DESC

-- Per job: its ?1 latest runs (dry runs aside), its last success, its last failure and its last
-- scheduled run or retry. Each part is an index walk from the newest row down.
WITH codes AS (SELECT DISTINCT code FROM job_runs)
SELECT id, code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
    lease_until_us, host, pid
FROM job_runs WHERE id IN (
    SELECT y.id FROM codes AS c JOIN job_runs AS y ON y.id IN (
        SELECT z.id FROM job_runs AS z WHERE z.code = c.code
        AND z.kind <> 'dry_run' ORDER BY z.started_at_us DESC, z.id DESC LIMIT ?1)
    UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code
        AND z.kind <> 'dry_run' AND z.outcome = 'succeeded'
        ORDER BY z.id DESC LIMIT 1) FROM codes AS c
    UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code
        AND z.kind <> 'dry_run' AND z.outcome IN ('failed', 'abandoned')
        ORDER BY z.id DESC LIMIT 1) FROM codes AS c
    UNION SELECT (SELECT z.id FROM job_runs AS z WHERE z.code = c.code
        AND z.kind IN ('scheduled', 'retry')
        ORDER BY z.tick_us DESC, z.attempt DESC, z.id DESC LIMIT 1) FROM codes AS c)
ORDER BY code, started_at_us DESC, id DESC

-- ?2 finished scheduled runs of job ?1, the first at ?3 (µs UTC), one every ?4 µs, each lasting
-- one second; the (i + ?5)-th of every ten failed, the others succeeded.
WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?2)
INSERT INTO job_runs (code, tick_us, kind, attempt, started_at_us, ended_at_us, outcome, message,
                      host, pid)
SELECT ?1, ?3 + i * ?4, 'scheduled', 1, ?3 + i * ?4, ?3 + i * ?4 + 1000000,
       CASE WHEN (i + ?5) % 10 = 9 THEN 'failed' ELSE 'succeeded' END, 'seeded', 'seed', 1
FROM k

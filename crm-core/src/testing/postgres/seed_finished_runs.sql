-- $2 finished scheduled runs of job $1, the first at $3 (µs since the epoch), one every $4 µs,
-- each lasting one second; the ($i + $5)-th of every ten failed, the others succeeded.
INSERT INTO job_runs (code, tick, kind, attempt, started_at, ended_at, outcome, message, host,
                      pid)
SELECT $1, t, 'scheduled', 1, t, t + interval '1 second',
       CASE WHEN (i + $5) % 10 = 9 THEN 'failed' ELSE 'succeeded' END, 'seeded', 'seed', 1
FROM generate_series(0::bigint, $2 - 1) AS i,
     LATERAL (SELECT to_timestamp(0) + ($3 + i * $4) * interval '1 microsecond') AS s(t)

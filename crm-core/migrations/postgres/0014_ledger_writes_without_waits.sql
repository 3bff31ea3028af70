-- Two costs every run paid on PostgreSQL, measured with pgbench replaying a claim and an end
-- (6 December 2026, BENCHMARKS.md):
--
-- 1. job_runs_claim_if_clear (0011, 0012) was a SQL function that is not inlined, so PostgreSQL
--    15 planned its statements again at every call: 0.56 ms a claim, 0.37 ms in PL/pgSQL,
--    which keeps its plans for the session. Same arguments, same statements, same answers;
--    a VOLATILE function still takes a fresh snapshot for each statement, so the insert's check
--    sees every claim committed before the advisory lock was granted.
CREATE OR REPLACE FUNCTION job_runs_claim_if_clear(
    lock_key BIGINT, run_code TEXT, run_tick TIMESTAMPTZ, run_kind TEXT, run_attempt INTEGER,
    run_started TIMESTAMPTZ, run_lease TIMESTAMPTZ, run_host TEXT, run_pid BIGINT,
    now_at TIMESTAMPTZ, only_one BOOLEAN
) RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    claimed BIGINT;
BEGIN
    IF only_one THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    END IF;
    INSERT INTO job_runs (code, tick, kind, attempt, started_at, outcome, lease_until, host, pid)
    SELECT run_code, run_tick, run_kind, run_attempt, run_started, 'running', run_lease, run_host,
           run_pid
    WHERE NOT EXISTS (
        SELECT 1 FROM job_runs
        WHERE outcome = 'running'
          AND (lease_until < now_at OR (only_one AND code = run_code AND kind <> 'dry_run'))
    )
    ON CONFLICT (code, kind, tick, attempt) DO NOTHING
    RETURNING id INTO claimed;
    RETURN claimed;
END
$$;

-- 2. job_run_counts (0009) held one row per job and outcome, updated by every run's end: the
--    row stays locked until the ending transaction commits, so the ends of one job's runs
--    waited for each other's commits (a worker at concurrency 8 ending report runs: 1.7 ms an
--    end, against 0.8 ms without the trigger). Each end now appends a row; the reader sums
--    them per job and outcome and folds them into one per pair when there are many
--    (fold_run_counts.sql), as the retention prune does, so they stay few without a reader.
ALTER TABLE job_run_counts DROP CONSTRAINT job_run_counts_pkey;
CREATE OR REPLACE FUNCTION job_run_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.outcome <> 'running' AND NEW.kind <> 'dry_run'
       AND (TG_OP = 'INSERT' OR NEW.outcome IS DISTINCT FROM OLD.outcome) THEN
        INSERT INTO job_run_counts (code, outcome, runs, duration_us)
        VALUES (NEW.code, NEW.outcome, 1,
                (extract(epoch FROM NEW.ended_at - NEW.started_at) * 1000000)::bigint);
    END IF;
    RETURN NULL;
END
$$;

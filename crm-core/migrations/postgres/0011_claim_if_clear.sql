-- RunLedger::claim_if_clear's insert, in one statement for the caller: under the job's advisory
-- lock (the key the full claim takes, computed by the caller), inserts the run as running unless
-- a running claim of any job has a lease that ended before now_at, the key is taken, or (only_one)
-- another run of the job is running; answers the new id, or NULL. A VOLATILE function's every
-- statement takes a fresh snapshot, so the insert's check sees every claim committed before the
-- lock was granted (one statement with the lock in a CTE would check an older snapshot).
CREATE FUNCTION job_runs_claim_if_clear(
    lock_key BIGINT, run_code TEXT, run_tick TIMESTAMPTZ, run_kind TEXT, run_attempt INTEGER,
    run_started TIMESTAMPTZ, run_lease TIMESTAMPTZ, run_host TEXT, run_pid BIGINT,
    now_at TIMESTAMPTZ, only_one BOOLEAN
) RETURNS BIGINT LANGUAGE sql VOLATILE AS $$
    SELECT pg_advisory_xact_lock(lock_key);
    INSERT INTO job_runs (code, tick, kind, attempt, started_at, outcome, lease_until, host, pid)
    SELECT run_code, run_tick, run_kind, run_attempt, run_started, 'running', run_lease, run_host,
           run_pid
    WHERE NOT EXISTS (
        SELECT 1 FROM job_runs
        WHERE outcome = 'running'
          AND (lease_until < now_at OR (only_one AND code = run_code AND kind <> 'dry_run'))
    )
    ON CONFLICT (code, kind, tick, attempt) DO NOTHING
    RETURNING id;
$$;

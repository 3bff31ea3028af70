-- job_runs_claim_if_clear (0011) takes the job's advisory lock only for an exclusive claim
-- (only_one). The lock makes the check that no other run of the job is running atomic with the
-- insert. A claim that may run beside others (a job that allows parallel runs, a dry run) has
-- nothing to check against its siblings: its key is guarded by the unique index, and the check
-- for expired leases only sends the caller down the full path. Taken for every claim, the lock
-- queued all of a job's claimants behind each other's commits: a broker worker draining a
-- backlog of report ticks claimed them one WAL flush at a time, whatever its concurrency.
CREATE OR REPLACE FUNCTION job_runs_claim_if_clear(
    lock_key BIGINT, run_code TEXT, run_tick TIMESTAMPTZ, run_kind TEXT, run_attempt INTEGER,
    run_started TIMESTAMPTZ, run_lease TIMESTAMPTZ, run_host TEXT, run_pid BIGINT,
    now_at TIMESTAMPTZ, only_one BOOLEAN
) RETURNS BIGINT LANGUAGE sql VOLATILE AS $$
    SELECT pg_advisory_xact_lock(lock_key) WHERE only_one;
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

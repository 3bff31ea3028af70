-- Runs counted per job and outcome, kept by a trigger as runs finish, so that a Prometheus
-- counter read from here (crm_job_runs_total) never goes down, also when a prune deletes the
-- rows it counted. Dry runs count for nothing; a running row is counted once it ends (or is
-- recorded finished, as a skip is). A run marked abandoned that later reports its real outcome
-- counts under both: counters only go up. duration_us sums the counted runs' durations.
CREATE TABLE job_run_counts (
    code         TEXT   NOT NULL,
    outcome      TEXT   NOT NULL,
    runs         BIGINT NOT NULL,
    duration_us  BIGINT NOT NULL,
    PRIMARY KEY (code, outcome)
);
INSERT INTO job_run_counts (code, outcome, runs, duration_us)
SELECT code, outcome, count(*),
       coalesce(sum((extract(epoch FROM ended_at - started_at) * 1000000)::bigint), 0)
FROM job_runs
WHERE outcome <> 'running' AND kind <> 'dry_run'
GROUP BY code, outcome;
CREATE FUNCTION job_run_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.outcome <> 'running' AND NEW.kind <> 'dry_run'
       AND (TG_OP = 'INSERT' OR NEW.outcome IS DISTINCT FROM OLD.outcome) THEN
        INSERT INTO job_run_counts AS c (code, outcome, runs, duration_us)
        VALUES (NEW.code, NEW.outcome, 1,
                (extract(epoch FROM NEW.ended_at - NEW.started_at) * 1000000)::bigint)
        ON CONFLICT (code, outcome) DO UPDATE
        SET runs = c.runs + 1, duration_us = c.duration_us + EXCLUDED.duration_us;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER job_run_counts_add AFTER INSERT OR UPDATE OF outcome ON job_runs
FOR EACH ROW EXECUTE FUNCTION job_run_counts_add();
-- A job's latest end per outcome (last success, last failure) is one index lookup.
CREATE INDEX job_runs_outcome_end_idx ON job_runs (code, outcome, ended_at);

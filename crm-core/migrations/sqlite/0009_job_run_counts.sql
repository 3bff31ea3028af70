-- Runs counted per job and outcome, kept by triggers as runs finish, so that a Prometheus
-- counter read from here (crm_job_runs_total) never goes down, also when a prune deletes the
-- rows it counted. Dry runs count for nothing; a running row is counted once it ends (or is
-- recorded finished, as a skip is). A run marked abandoned that later reports its real outcome
-- counts under both: counters only go up. duration_us sums the counted runs' durations.
CREATE TABLE job_run_counts (
    code         TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    runs         INTEGER NOT NULL,
    duration_us  INTEGER NOT NULL,
    PRIMARY KEY (code, outcome)
);
INSERT INTO job_run_counts (code, outcome, runs, duration_us)
SELECT code, outcome, count(*), coalesce(sum(ended_at_us - started_at_us), 0)
FROM job_runs
WHERE outcome <> 'running' AND kind <> 'dry_run'
GROUP BY code, outcome;
CREATE TRIGGER job_run_counts_on_insert AFTER INSERT ON job_runs
WHEN NEW.outcome <> 'running' AND NEW.kind <> 'dry_run'
BEGIN
    INSERT INTO job_run_counts (code, outcome, runs, duration_us)
    VALUES (NEW.code, NEW.outcome, 1, NEW.ended_at_us - NEW.started_at_us)
    ON CONFLICT (code, outcome) DO UPDATE
    SET runs = runs + 1, duration_us = duration_us + excluded.duration_us;
END;
CREATE TRIGGER job_run_counts_on_finish AFTER UPDATE OF outcome ON job_runs
WHEN NEW.outcome <> OLD.outcome AND NEW.outcome <> 'running' AND NEW.kind <> 'dry_run'
BEGIN
    INSERT INTO job_run_counts (code, outcome, runs, duration_us)
    VALUES (NEW.code, NEW.outcome, 1, NEW.ended_at_us - NEW.started_at_us)
    ON CONFLICT (code, outcome) DO UPDATE
    SET runs = runs + 1, duration_us = duration_us + excluded.duration_us;
END;
-- A job's latest end per outcome (last success, last failure) is one index lookup.
CREATE INDEX job_runs_outcome_end_idx ON job_runs (code, outcome, ended_at_us);

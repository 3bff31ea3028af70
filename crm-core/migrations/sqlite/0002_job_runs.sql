-- The run ledger of the scheduled jobs (crm_core::ledger). Timestamps are INTEGER microseconds
-- since the Unix epoch, in UTC, like the CRM's tables.

CREATE TABLE job_runs (
    id              INTEGER PRIMARY KEY,
    code            TEXT    NOT NULL CHECK (length(code) BETWEEN 1 AND 200),
    tick_us         INTEGER NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('scheduled', 'retry', 'manual', 'dry_run')),
    attempt         INTEGER NOT NULL CHECK (attempt >= 1),
    started_at_us   INTEGER NOT NULL,
    ended_at_us     INTEGER,
    outcome         TEXT    NOT NULL
                    CHECK (outcome IN ('running', 'succeeded', 'failed', 'skipped', 'abandoned')),
    message         TEXT,
    lease_until_us  INTEGER,
    host            TEXT    NOT NULL,
    pid             INTEGER NOT NULL,
    -- A running row holds a lease; a finished one has an end.
    CHECK ((outcome = 'running') = (ended_at_us IS NULL))
);
-- The claim: one run per job, kind, tick and attempt, whatever the number of runners.
CREATE UNIQUE INDEX job_runs_claim_key ON job_runs (code, kind, tick_us, attempt);
-- Runs still going (lease checks, abandoning expired claims).
CREATE INDEX job_runs_running_idx ON job_runs (code) WHERE outcome = 'running';
-- History, newest first.
CREATE INDEX job_runs_started_idx ON job_runs (started_at_us, id);

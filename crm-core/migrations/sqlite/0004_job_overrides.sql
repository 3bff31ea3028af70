-- Run-time schedule overrides of the scheduled jobs (crm_core::overrides). Timestamps are
-- INTEGER microseconds since the Unix epoch, in UTC, like the ledger's.

-- One row per job an operator has touched: paused or not, and a replacement schedule (the
-- Schedule's text form; NULL means the code's own). `since_us` is when the effective schedule
-- or the enabled flag last changed: ticks at or before it never count as missed.
CREATE TABLE job_overrides (
    code        TEXT    PRIMARY KEY CHECK (length(code) BETWEEN 1 AND 200),
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    schedule    TEXT    CHECK (schedule IS NULL OR length(schedule) BETWEEN 1 AND 500),
    since_us    INTEGER NOT NULL,
    changed_by  TEXT    NOT NULL,
    changed_at_us INTEGER NOT NULL
);

-- One-off runs asked for at a given instant; each runs once (claimed in job_runs as a manual
-- run whose tick is `at_us`).
CREATE TABLE job_one_off_runs (
    id               INTEGER PRIMARY KEY,
    code             TEXT    NOT NULL CHECK (length(code) BETWEEN 1 AND 200),
    at_us            INTEGER NOT NULL,
    requested_by     TEXT    NOT NULL,
    requested_at_us  INTEGER NOT NULL,
    UNIQUE (code, at_us)
);

-- Who changed what, when.
CREATE TABLE job_override_audit (
    id      INTEGER PRIMARY KEY,
    at_us   INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    code    TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    detail  TEXT
);
CREATE INDEX job_override_audit_code_idx ON job_override_audit (code, id);

-- The change counter: one row, incremented in the transaction of every change, so a running
-- scheduler notices a change by reading one integer.
CREATE TABLE job_override_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO job_override_version (id, version) VALUES (1, 0);

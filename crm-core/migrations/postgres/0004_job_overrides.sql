-- Run-time schedule overrides of the scheduled jobs (crm_core::overrides).

-- One row per job an operator has touched: paused or not, and a replacement schedule (the
-- Schedule's text form; NULL means the code's own). `since` is when the effective schedule
-- or the enabled flag last changed: ticks at or before it never count as missed.
CREATE TABLE job_overrides (
    code        TEXT        PRIMARY KEY CHECK (length(code) BETWEEN 1 AND 200),
    enabled     BOOLEAN     NOT NULL,
    schedule    TEXT        CHECK (schedule IS NULL OR length(schedule) BETWEEN 1 AND 500),
    since       TIMESTAMPTZ NOT NULL,
    changed_by  TEXT        NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL
);

-- One-off runs asked for at a given instant; each runs once (claimed in job_runs as a manual
-- run whose tick is `at`).
CREATE TABLE job_one_off_runs (
    id            BIGSERIAL   PRIMARY KEY,
    code          TEXT        NOT NULL CHECK (length(code) BETWEEN 1 AND 200),
    at            TIMESTAMPTZ NOT NULL,
    requested_by  TEXT        NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (code, at)
);

-- Who changed what, when.
CREATE TABLE job_override_audit (
    id      BIGSERIAL   PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    actor   TEXT        NOT NULL,
    code    TEXT        NOT NULL,
    action  TEXT        NOT NULL,
    detail  TEXT
);
CREATE INDEX job_override_audit_code_idx ON job_override_audit (code, id);

-- The change counter: one row, incremented in the transaction of every change, so a running
-- scheduler notices a change by reading one integer.
CREATE TABLE job_override_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT  NOT NULL
);
INSERT INTO job_override_version (id, version) VALUES (1, 0);

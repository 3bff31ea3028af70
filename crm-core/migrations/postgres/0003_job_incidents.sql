-- Schedule incidents of the scheduled jobs (crm_core::ledger::Incident): a job whose due run is
-- late or was missed. Remembered here so that every process watching the jobs alerts once per
-- incident, and once when it ends.

CREATE TABLE job_incidents (
    id           BIGSERIAL   PRIMARY KEY,
    code         TEXT        NOT NULL CHECK (length(code) BETWEEN 1 AND 200),
    kind         TEXT        NOT NULL CHECK (kind IN ('late', 'missed')),
    tick         TIMESTAMPTZ NOT NULL,
    opened_at    TIMESTAMPTZ NOT NULL,
    resolved_at  TIMESTAMPTZ
);
-- At most one open incident per job: the insert that opens one is the only one that alerts.
CREATE UNIQUE INDEX job_incidents_open ON job_incidents (code) WHERE resolved_at IS NULL;
-- Each job's latest runs (the health of every job is computed from them in one query).
CREATE INDEX job_runs_code_started_idx ON job_runs (code, started_at, id);

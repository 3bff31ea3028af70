-- Retention of schedule incidents (RunLedger::prune): those resolved before ?1. Open ones stay.
DELETE FROM job_incidents WHERE resolved_at_us < ?1

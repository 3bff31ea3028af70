-- One batch of the run ledger's retention (RunLedger::prune): up to $5 finished runs that
-- started and ended before $1, oldest first, from after the key (started_at, id) = ($2, $3)
-- where the previous batch stopped, except the ids in $4 (each job's latest runs and
-- landmarks, which health and `crm jobs list` read) and the run of a one-off run still listed
-- (without it the one-off would look pending and run again). One short statement per batch;
-- it walks job_runs_started_idx from the key, never over the rows earlier batches deleted.
DELETE FROM job_runs WHERE id IN (
    SELECT r.id FROM job_runs AS r
    WHERE r.started_at < $1
      AND r.started_at >= $2 AND (r.started_at > $2 OR r.id > $3)
      AND r.ended_at < $1
      AND NOT (r.id = ANY($4))
      AND NOT (r.kind = 'manual' AND EXISTS (
          SELECT 1 FROM job_one_off_runs AS o WHERE o.code = r.code AND o.at = r.tick))
    ORDER BY r.started_at, r.id
    LIMIT $5
)
RETURNING started_at, id

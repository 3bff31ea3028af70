-- Retention of restock idempotency keys (migration 0008; RunLedger::prune): those taken
-- before $1. A key only guards its tick's re-runs, which come within hours, never months later.
DELETE FROM restock_keys WHERE created_at < $1

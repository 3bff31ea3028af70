-- Idempotency keys of `updateLowStockProducts` (issue 15): a restock asked again with a key
-- already used changes nothing and answers what the first one restocked, so a job's tick re-run
-- after its first attempt committed does not restock twice. A key is written in the same
-- transaction as its restock.
CREATE TABLE restock_keys (
    key          TEXT        PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 200),
    product_ids  BIGINT[]    NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL
);

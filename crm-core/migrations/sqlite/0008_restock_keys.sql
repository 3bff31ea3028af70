-- Idempotency keys of `updateLowStockProducts` (issue 15): a restock asked again with a key
-- already used changes nothing and answers what the first one restocked, so a job's tick re-run
-- after its first attempt committed does not restock twice. A key is written in the same
-- transaction as its restock. `product_ids` is the JSON array of the products it restocked.
CREATE TABLE restock_keys (
    key            TEXT    PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 200),
    product_ids    TEXT    NOT NULL DEFAULT '[]',
    created_at_us  INTEGER NOT NULL
);

-- Takes the idempotency key $1 for a restock, unless a restock already took it (then no row
-- is inserted and the caller answers that restock's products instead). A concurrent restock
-- with the same key waits here until the first commits, then inserts nothing.
INSERT INTO restock_keys (key, created_at) VALUES ($1, $2)
ON CONFLICT (key) DO NOTHING

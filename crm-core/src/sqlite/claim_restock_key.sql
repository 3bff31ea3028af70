-- Takes the idempotency key ?1 for a restock, unless a restock already took it (then no row
-- is inserted and the caller answers that restock's products instead).
INSERT INTO restock_keys (key, created_at_us) VALUES (?1, ?2)
ON CONFLICT (key) DO NOTHING

-- What the restock that took the idempotency key ?1 restocked: the JSON array ?2 of its
-- products' ids, for a later call with the same key to answer.
UPDATE restock_keys SET product_ids = ?2 WHERE key = ?1

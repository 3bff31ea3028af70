-- The products the restock that took the idempotency key ?1 restocked, as they are now, by id.
SELECT id, name, price_cents, stock FROM products
WHERE id IN (SELECT value FROM json_each((SELECT product_ids FROM restock_keys WHERE key = ?1)))
ORDER BY id

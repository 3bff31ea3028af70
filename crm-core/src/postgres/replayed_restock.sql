-- The products the restock that took the idempotency key $1 restocked, as they are now, by id.
SELECT id, name, price, stock FROM products
WHERE id = ANY ((SELECT product_ids FROM restock_keys WHERE key = $1)::BIGINT[])
ORDER BY id

-- ?1: the ids as one JSON array.
SELECT id, name, price_cents, stock FROM products
WHERE id IN (SELECT value FROM json_each(?1))

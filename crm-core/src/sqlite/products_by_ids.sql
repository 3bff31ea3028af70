-- ?1: the ids as one JSON array. The products come as ONE JSON array of [id, name,
-- price_cents, stock] (one row crosses from SQLite's worker thread, see orders_between.sql).
SELECT json_group_array(json_array(id, name, price_cents, stock)) FROM products
WHERE id IN (SELECT value FROM json_each(?1))

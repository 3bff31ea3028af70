-- ?1: the ids as one JSON array. The orders come as ONE JSON array of [id, customer_id,
-- total_amount_cents, order_date_us] (one row crosses from SQLite's worker thread, see
-- orders_between.sql).
SELECT json_group_array(json_array(id, customer_id, total_amount_cents, order_date_us))
FROM orders
WHERE id IN (SELECT value FROM json_each(?1))

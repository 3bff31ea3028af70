-- Orders with ?1 <= order_date <= ?2 (µs UTC) and their customer's e-mail, as ONE JSON array
-- of [id, email, order_date_us]: one row crosses from SQLite's worker thread instead of one per
-- order, which costs more than the query itself on a week of a large shop (see BENCHMARKS.md).
-- The caller sorts (oldest first, then by id).
SELECT json_group_array(json_array(o.id, c.email, o.order_date_us))
FROM orders o
JOIN customers c ON c.id = o.customer_id
WHERE o.order_date_us BETWEEN ?1 AND ?2

-- Orders with ?1 <= order_date <= ?2 (µs UTC) and their customer's e-mail, oldest first.
SELECT o.id, c.email, o.order_date_us
FROM orders o
JOIN customers c ON c.id = o.customer_id
WHERE o.order_date_us BETWEEN ?1 AND ?2
ORDER BY o.order_date_us, o.id

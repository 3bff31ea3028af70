-- One page of orders_between: the orders with $1 <= order_date <= $2 that come after the
-- position ($3, id $4) in the order (order_date, id), at most $5 of them, with their customer's
-- e-mail. Written as order_date >= $3 AND (order_date > $3 OR id > $4), as the lists' keyset
-- pages are, so the planner seeks in orders_order_date_keyset_idx and stops after the page.
SELECT o.id, c.email, o.order_date
FROM orders o
JOIN customers c ON c.id = o.customer_id
WHERE o.order_date BETWEEN $1 AND $2
  AND o.order_date >= $3
  AND (o.order_date > $3 OR o.id > $4)
ORDER BY o.order_date, o.id
LIMIT $5

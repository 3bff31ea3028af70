-- One page of orders_between: the orders with $1 <= order_date <= $2 that come after the
-- position ($1, id $3) in the order (order_date, id), at most $4 of them, with their customer's
-- e-mail. $1 is the later of the window's start and the previous page's last order date (the
-- first page passes the window's start and the smallest id), so the planner seeks to the
-- position in orders_order_date_keyset_idx and stops after the page.
SELECT o.id, c.email, o.order_date
FROM orders o
JOIN customers c ON c.id = o.customer_id
WHERE o.order_date BETWEEN $1 AND $2
  AND (o.order_date > $1 OR o.id > $3)
ORDER BY o.order_date, o.id
LIMIT $4

-- The cleanup, one statement; orders and order lines follow by ON DELETE CASCADE.
-- $1 is as_of minus 365 days; the rule is the one of count_inactive.sql.
DELETE FROM customers c
WHERE c.created_at < $1
  AND NOT EXISTS (
      SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.order_date >= $1
  )

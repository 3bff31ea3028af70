-- The cleanup, one statement; orders and order lines follow by ON DELETE CASCADE.
-- ?1 is as_of minus 365 days (µs UTC); the rule is the one of count_inactive.sql.
DELETE FROM customers
WHERE created_at_us < ?1
  AND NOT EXISTS (
      SELECT 1 FROM orders o WHERE o.customer_id = customers.id AND o.order_date_us >= ?1
  )

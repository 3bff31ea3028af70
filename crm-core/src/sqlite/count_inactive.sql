-- Customers the cleanup would delete. ?1 is as_of minus 365 days (µs UTC): a customer created
-- strictly before it, with no order dated at or after it.
SELECT COUNT(*)
FROM customers c
WHERE c.created_at_us < ?1
  AND NOT EXISTS (
      SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.order_date_us >= ?1
  )

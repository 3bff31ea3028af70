-- The cleanup, inside one BEGIN IMMEDIATE transaction. ?1 is as_of minus 365 days (µs UTC);
-- the rule is the one of count_inactive.sql. The set is computed once; the order lines and
-- orders are deleted in bulk before their customers, which is about twice as fast as letting
-- ON DELETE CASCADE delete them row by row (the cascade stays as the schema's guarantee).
CREATE TEMP TABLE doomed_customers (id INTEGER PRIMARY KEY);
INSERT INTO doomed_customers
SELECT c.id
FROM customers c
WHERE c.created_at_us < ?1
  AND NOT EXISTS (
      SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.order_date_us >= ?1
  );
DELETE FROM order_products
WHERE order_id IN (SELECT o.id FROM orders o JOIN doomed_customers d ON d.id = o.customer_id);
DELETE FROM orders WHERE customer_id IN (SELECT id FROM doomed_customers);
DELETE FROM customers WHERE id IN (SELECT id FROM doomed_customers);
DROP TABLE doomed_customers;

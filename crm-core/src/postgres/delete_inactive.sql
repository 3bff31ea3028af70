-- The cleanup, inside one transaction. $1 is as_of minus 365 days; the rule is the one of
-- count_inactive.sql.
-- 1. The candidates, locked: from here on no order can be added for them (create_order takes
--    FOR KEY SHARE on its customer, which waits for FOR UPDATE).
-- 2. With a new snapshot (READ COMMITTED), drop any candidate that an order committed between
--    the first snapshot and the lock made active again: a fresh order is never deleted.
-- 3. Delete order lines, orders, then customers in bulk: about twice as fast as letting ON
--    DELETE CASCADE do it row by row (the cascade stays as the schema's guarantee).
CREATE TEMP TABLE doomed_customers (id BIGINT PRIMARY KEY) ON COMMIT DROP;
INSERT INTO doomed_customers
SELECT c.id
FROM customers c
WHERE c.created_at < $1
  AND NOT EXISTS (
      SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.order_date >= $1
  )
FOR UPDATE OF c;
DELETE FROM doomed_customers d
WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = d.id AND o.order_date >= $1);
ANALYZE doomed_customers;
DELETE FROM order_products op
USING orders o, doomed_customers d
WHERE op.order_id = o.id AND o.customer_id = d.id;
DELETE FROM orders o USING doomed_customers d WHERE o.customer_id = d.id;
DELETE FROM customers c USING doomed_customers d WHERE c.id = d.id;

-- A page of orders' customers and products in one statement, so the page crosses to SQLite's
-- worker thread once for both (see orders_between.sql): ?1 the customer ids and ?2 the order
-- ids, each one JSON array. The first column is what customers_by_ids.sql gives, the second
-- what order_products.sql gives.
SELECT
  (SELECT json_group_array(json_array(id, name, email, phone, created_at_us)) FROM customers
   WHERE id IN (SELECT value FROM json_each(?1))),
  (SELECT json_group_array(json_array(op.order_id, p.id, p.name, p.price_cents, p.stock))
   FROM order_products op JOIN products p ON p.id = op.product_id
   WHERE op.order_id IN (SELECT value FROM json_each(?2)))

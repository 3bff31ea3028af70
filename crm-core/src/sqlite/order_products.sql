-- The products of the orders ?1 (a JSON array of ids) as ONE JSON array of [order_id,
-- product_id, name, price_cents, stock] (one row crosses from SQLite's worker thread, see
-- orders_between.sql). The caller sorts by order, then product.
SELECT json_group_array(json_array(op.order_id, p.id, p.name, p.price_cents, p.stock))
FROM order_products op JOIN products p ON p.id = op.product_id
WHERE op.order_id IN (SELECT value FROM json_each(?1))

-- The products of the orders ?1 (a JSON array of ids), as (order, product) rows.
SELECT op.order_id, p.id, p.name, p.price_cents, p.stock
FROM order_products op JOIN products p ON p.id = op.product_id
WHERE op.order_id IN (SELECT value FROM json_each(?1))
ORDER BY op.order_id, p.id

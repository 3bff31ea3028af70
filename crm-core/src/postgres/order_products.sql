-- The products of the orders $1, as (order, product) rows.
SELECT op.order_id, p.id, p.name, p.price, p.stock
FROM order_products op JOIN products p ON p.id = op.product_id
WHERE op.order_id = ANY($1)
ORDER BY op.order_id, p.id

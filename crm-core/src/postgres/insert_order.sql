-- The order row, its total summed in SQL from the products' current prices (the caller's
-- numbers are never trusted). $1 customer id, $2 order date, $3 product ids.
INSERT INTO orders (customer_id, total_amount, order_date)
SELECT $1, COALESCE(SUM(price), 0), $2
FROM products
WHERE id = ANY($3)
RETURNING id, customer_id, total_amount, order_date

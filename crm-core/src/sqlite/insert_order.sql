-- The order row, its total summed in SQL from the products' current prices (the caller's
-- numbers are never trusted). ?1 customer id, ?2 order date (µs UTC), ?3 product ids (JSON).
INSERT INTO orders (customer_id, total_amount_cents, order_date_us)
SELECT ?1, COALESCE(SUM(price_cents), 0), ?2
FROM products
WHERE id IN (SELECT value FROM json_each(?3))
RETURNING id, customer_id, total_amount_cents, order_date_us

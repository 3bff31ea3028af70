-- The order lines of order ?1: one per product of ?2 (a JSON array of ids).
INSERT INTO order_products (order_id, product_id)
SELECT ?1, value FROM json_each(?2)

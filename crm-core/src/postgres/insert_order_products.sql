-- The order lines of order $1: one per product of $2.
INSERT INTO order_products (order_id, product_id) SELECT $1, unnest($2::BIGINT[])

-- Which of the products $1 exist, locked as the customer is (see order_customer.sql).
SELECT id FROM products WHERE id = ANY($1) FOR KEY SHARE

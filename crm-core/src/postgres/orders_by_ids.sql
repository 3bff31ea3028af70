SELECT id, customer_id, total_amount, order_date FROM orders WHERE id = ANY($1)

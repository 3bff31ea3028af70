-- ?1: the ids as one JSON array.
SELECT id, customer_id, total_amount_cents, order_date_us FROM orders
WHERE id IN (SELECT value FROM json_each(?1))

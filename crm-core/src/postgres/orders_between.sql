-- Orders with $1 <= order_date <= $2 and their customer's e-mail, oldest first.
SELECT o.id, c.email, o.order_date
FROM orders o
JOIN customers c ON c.id = o.customer_id
WHERE o.order_date BETWEEN $1 AND $2
ORDER BY o.order_date, o.id

-- The weekly report's figures, counted and summed by the database.
SELECT (SELECT COUNT(*) FROM customers) AS customers,
       (SELECT COUNT(*) FROM orders) AS orders,
       (SELECT COALESCE(SUM(total_amount), 0) FROM orders) AS revenue

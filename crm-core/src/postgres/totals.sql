-- The weekly report's figures, counted and summed by the database: the orders are read once for
-- their count and their sum (two subqueries would read them twice; at a million orders that
-- is most of the report's time).
SELECT (SELECT COUNT(*) FROM customers) AS customers, o.orders, o.revenue
FROM (SELECT COUNT(*) AS orders, COALESCE(SUM(total_amount), 0) AS revenue FROM orders) o

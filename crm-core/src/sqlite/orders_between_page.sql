-- One page of orders_between: the orders with ?1 <= order_date_us <= ?2 that come after the
-- position (?1 µs, id ?3) in the order (order_date_us, id), at most ?4 of them, with their
-- customer's e-mail, as ONE JSON array of [id, email, order_date_us] (one row crosses from
-- SQLite's worker thread, see orders_between.sql). ?1 is the later of the window's start and
-- the previous page's last order date (the first page passes the window's start and the
-- smallest id): one lower bound, so SQLite seeks to the position in the order-date index
-- (which ends with the rowid, the id) and stops after the page. The caller sorts the page
-- again, as an aggregate does not promise its input's order.
SELECT json_group_array(json_array(id, email, order_date_us))
FROM (
    SELECT o.id, c.email, o.order_date_us
    FROM orders o
    JOIN customers c ON c.id = o.customer_id
    WHERE o.order_date_us BETWEEN ?1 AND ?2
      AND (o.order_date_us > ?1 OR o.id > ?3)
    ORDER BY o.order_date_us, o.id
    LIMIT ?4
)

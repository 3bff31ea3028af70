-- One page of orders_between: the orders with ?1 <= order_date_us <= ?2 that come after the
-- position (?3 µs, id ?4) in the order (order_date_us, id), at most ?5 of them, with their
-- customer's e-mail, as ONE JSON array of [id, email, order_date_us] (one row crosses from
-- SQLite's worker thread, see orders_between.sql). The inner query seeks in the order-date
-- index (which ends with the rowid, the id) and stops after the page; the caller sorts the
-- page again, as an aggregate does not promise its input's order.
SELECT json_group_array(json_array(id, email, order_date_us))
FROM (
    SELECT o.id, c.email, o.order_date_us
    FROM orders o
    JOIN customers c ON c.id = o.customer_id
    WHERE o.order_date_us BETWEEN ?1 AND ?2
      AND o.order_date_us >= ?3
      AND (o.order_date_us > ?3 OR o.id > ?4)
    ORDER BY o.order_date_us, o.id
    LIMIT ?5
)

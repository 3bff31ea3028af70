-- ?1: the ids as one JSON array. The customers come as ONE JSON array of [id, name, email,
-- phone, created_at_us] (one row crosses from SQLite's worker thread, see orders_between.sql).
SELECT json_group_array(json_array(id, name, email, phone, created_at_us)) FROM customers
WHERE id IN (SELECT value FROM json_each(?1))

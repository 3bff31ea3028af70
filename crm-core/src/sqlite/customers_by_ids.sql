-- ?1: the ids as one JSON array.
SELECT id, name, email, phone, created_at_us FROM customers
WHERE id IN (SELECT value FROM json_each(?1))

-- The order's customer, if it exists (the transaction holds the write lock already).
SELECT id FROM customers WHERE id = ?1

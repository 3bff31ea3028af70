-- The order's customer, if it exists. FOR KEY SHARE: it cannot be deleted before the order
-- commits, and concurrent orders do not block each other.
SELECT id FROM customers WHERE id = $1 FOR KEY SHARE

-- Every product with stock below ?2 gets +?1, in one statement (SQLite has one writer at a
-- time); a stock that would pass the 32-bit range is left alone.
UPDATE products SET stock = stock + ?1
WHERE stock < ?2 AND stock <= 2147483647 - ?1
RETURNING id, name, price_cents, stock

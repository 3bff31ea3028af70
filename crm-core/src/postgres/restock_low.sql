-- Every product with stock below $2 gets +$1. Under READ COMMITTED a concurrent UPDATE waits
-- for the row lock and re-checks the WHERE clause on the newest row version, so no increment
-- is lost; a stock that would pass the 32-bit range is left alone.
UPDATE products SET stock = stock + $1
WHERE stock < $2 AND stock <= 2147483647 - $1
RETURNING id, name, price, stock

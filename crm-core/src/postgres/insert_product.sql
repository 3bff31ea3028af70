INSERT INTO products (name, price, stock) VALUES ($1, $2, $3)
RETURNING id, name, price, stock

INSERT INTO products (name, price_cents, stock) VALUES (?1, ?2, ?3)
RETURNING id, name, price_cents, stock

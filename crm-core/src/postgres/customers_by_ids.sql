SELECT id, name, email, phone, created_at FROM customers WHERE id = ANY($1)

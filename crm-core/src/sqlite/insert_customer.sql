INSERT INTO customers (name, email, phone, created_at_us) VALUES (?1, ?2, ?3, ?4)
RETURNING id, name, email, phone, created_at_us

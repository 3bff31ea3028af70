-- Which of the products ?1 (a JSON array of ids) exist.
SELECT id FROM products WHERE id IN (SELECT value FROM json_each(?1))
